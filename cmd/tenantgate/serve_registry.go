package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/tenantgate/tenantgate/internal/registry"
)

// openRegistry opens the Postgres registry when a database URL is configured, and the in-memory one
// seeded from the tenants file otherwise.
func openRegistry(ctx context.Context, a *app) (registry.Registry, error) {
	if a.cfg.DatabaseURL != "" {
		return nil, errors.New("the Postgres registry is not wired yet")
	}
	mem := registry.NewMemory()
	if a.cfg.TenantsFile != "" {
		seed, err := registry.LoadSeedFile(a.cfg.TenantsFile, a.cfg.KnownPlan)
		if err != nil {
			return nil, err
		}
		for _, t := range seed {
			if _, err := mem.Create(ctx, t); err != nil {
				return nil, err
			}
		}
	}
	a.log.Info("no database URL: running on the embedded in-memory registry",
		slog.String("tenants_file", a.cfg.TenantsFile))
	return mem, nil
}
