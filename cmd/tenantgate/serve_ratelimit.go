package main

import "context"

// setupRateLimit wires the ratelimit component into the app. Placeholder until the ratelimit work lands.
func setupRateLimit(_ context.Context, a *app) error {
	a.log.Warn("component not built yet", "component", "ratelimit")
	return nil
}
