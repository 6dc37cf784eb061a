package main

import "context"

// setupProvisioner wires the provisioner component into the app. Placeholder until the provisioner work lands.
func setupProvisioner(_ context.Context, a *app) error {
	a.log.Warn("component not built yet", "component", "provisioner")
	return nil
}
