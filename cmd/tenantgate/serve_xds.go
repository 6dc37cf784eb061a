package main

import "context"

// setupXDS wires the xds component into the app. Placeholder until the xds work lands.
func setupXDS(_ context.Context, a *app) error {
	a.log.Warn("component not built yet", "component", "xds")
	return nil
}
