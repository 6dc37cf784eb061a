package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/registry/registrytest"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// newPostgres returns a Postgres registry on a fresh, migrated database, closed at cleanup, and the
// database's URL.
func newPostgres(t testing.TB, opts ...registry.PostgresOption) (*registry.Postgres, string) {
	t.Helper()
	url := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := registry.Migrate(ctx, url, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pg, err := registry.OpenPostgres(ctx, url, opts...)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(pg.Close)
	return pg, url
}

func TestPostgres_Conformance(t *testing.T) {
	registrytest.Run(t, func(t *testing.T) registry.Registry {
		pg, _ := newPostgres(t)
		return pg
	})
}
