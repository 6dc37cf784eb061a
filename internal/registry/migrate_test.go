package registry_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// Replicas starting together all migrate: each call succeeds, the migrations are applied once, and
// every call ends at the same version.
func TestMigrate_ConcurrentCallsAllSucceed(t *testing.T) {
	url := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const replicas = 3
	results := make(chan registry.MigrateResult, replicas)
	errs := make(chan error, replicas)
	start := make(chan struct{})
	for range replicas {
		go func() {
			<-start
			res, err := registry.Migrate(ctx, url, nil)
			results <- res
			errs <- err
		}()
	}
	close(start)
	var applied []int64
	var versions []int64
	for range replicas {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Migrate: %v", err)
		}
		res := <-results
		applied = append(applied, res.Applied...)
		versions = append(versions, res.Version)
	}
	slices.Sort(applied)
	if len(applied) == 0 || len(slices.Compact(slices.Clone(applied))) != len(applied) {
		t.Errorf("migrations applied %v: want each applied exactly once", applied)
	}
	if slices.Min(versions) != slices.Max(versions) || versions[0] != applied[len(applied)-1] {
		t.Errorf("versions after concurrent Migrate %v, want all at %d", versions, applied[len(applied)-1])
	}

	// Once up to date, Migrate does nothing and says so.
	again, err := registry.Migrate(ctx, url, nil)
	if err != nil || len(again.Applied) != 0 || again.Version != versions[0] {
		t.Fatalf("Migrate on an up-to-date schema = %+v, %v; want nothing applied at version %d", again, err, versions[0])
	}
}

// Everything the registry owns lives in schema tenantgate, the migration history included.
func TestMigrate_KeepsEverythingInSchemaTenantgate(t *testing.T) {
	url := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := registry.Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT table_schema || '.' || table_name FROM information_schema.tables
		WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"tenantgate.goose_db_version", "tenantgate.tenants"}
	if !slices.Equal(tables, want) {
		t.Fatalf("tables after Migrate %v, want %v", tables, want)
	}
}

func TestMigrate_FailsOnAnUnreachableDatabase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := registry.Migrate(ctx, unreachableURL, nil); err == nil {
		t.Fatal("Migrate of an unreachable database succeeded")
	}
}
