package steps

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/dbmigrate"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/tenantdb"
)

//go:embed tenantschema/*.sql
var tenantSchemaFiles embed.FS

// TenantSchema is the embedded migrations of a tenant's tables.
func TenantSchema() fs.FS {
	sub, err := fs.Sub(tenantSchemaFiles, "tenantschema")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return sub
}

// poolTables are the tenant tables, put under row-level security in the pool schema.
var poolTables = []string{"tenant_profile", "users"}

// madeMigrations is what the migrations step records.
type madeMigrations struct {
	Version int64 `json:"version"`
}

// migrationsStep brings the tenant's tables up to date with the embedded tenant migrations, applied
// with goose into the tenant's schema (the pool schema for pool tenants, under row-level security).
type migrationsStep struct {
	d *Deps
	// poolVersion is the pool schema's version once this process has migrated and protected it:
	// the pool schema is shared, so one success serves every later pool tenant.
	poolMu      sync.Mutex
	poolVersion int64
}

func (s *migrationsStep) Name() string { return Migrations }

func (s *migrationsStep) Do(ctx context.Context, r *saga.Run) error {
	t, err := s.d.targetOf(r.Spec)
	if err != nil {
		return err
	}
	var v int64
	if r.Spec.Model == tenant.Pool {
		v, err = s.migratePool(ctx, t)
	} else {
		v, err = dbmigrate.Up(ctx, t.conn, t.schema, TenantSchema())
	}
	if err != nil {
		return err
	}
	return r.Record(Migrations, madeMigrations{Version: v})
}

// migratePool migrates the shared pool schema and puts its tables under tenantdb's row-level
// security; both are idempotent, and done once per process.
func (s *migrationsStep) migratePool(ctx context.Context, t target) (int64, error) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	if s.poolVersion > 0 {
		return s.poolVersion, nil
	}
	v, err := dbmigrate.Up(ctx, t.conn, t.schema, TenantSchema())
	if err != nil {
		return 0, err
	}
	if err := tenantdb.Install(ctx, s.d.Shared); err != nil {
		return 0, err
	}
	for _, name := range poolTables {
		if err := tenantdb.Protect(ctx, s.d.Shared, t.table(name), ""); err != nil {
			return 0, fmt.Errorf("protect pool table: %w", err)
		}
	}
	s.poolVersion = v
	return v, nil
}

// Undo leaves the tables: they go with the tenant's schema or database (the database step's undo),
// and the pool schema is shared.
func (s *migrationsStep) Undo(context.Context, *saga.Run) error { return nil }
