package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tenantgate/tenantgate/internal/registry"
)

// openRegistry opens the Postgres registry when a database URL is configured, migrating its schema
// first, and the in-memory one seeded from the tenants file otherwise.
func openRegistry(ctx context.Context, a *app) (registry.Registry, error) {
	if a.cfg.DatabaseURL != "" {
		return openPostgres(ctx, a)
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

// openPostgres migrates the registry schema (replicas starting together take turns under an advisory
// lock) and opens the registry; the app closes it after every part has stopped.
func openPostgres(ctx context.Context, a *app) (registry.Registry, error) {
	url := string(a.cfg.DatabaseURL)
	res, err := registry.Migrate(ctx, url, a.log)
	if err != nil {
		return nil, fmt.Errorf("tenant registry (database_url): %w", err)
	}
	pg, err := registry.OpenPostgres(ctx, url, registry.WithLogger(a.log), registry.WithRegisterer(a.metrics))
	if err != nil {
		return nil, fmt.Errorf("tenant registry (database_url): %w", err)
	}
	a.closers = append(a.closers, pg.Close)
	a.log.Info("tenant registry: Postgres", slog.Int64("schema_version", res.Version),
		slog.Int("migrations_applied", len(res.Applied)))
	return pg, nil
}
