package main

import "context"

// setupAuthz wires the authz component into the app. Placeholder until the authz work lands.
func setupAuthz(_ context.Context, a *app) error {
	a.log.Warn("component not built yet", "component", "authz")
	return nil
}
