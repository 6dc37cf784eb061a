package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/tenantdb"
)

// madeDatabase is what the database step records.
type madeDatabase struct {
	Model    tenant.Model `json:"model"`
	Host     string       `json:"host"`
	Database string       `json:"database"`
	Schema   string       `json:"schema"`
}

// databaseStep gives the tenant its place for data: rows in the shared pool schema (pool), a schema
// of its own in the shared database (namespace), a database of its own on the tenant database server
// (bridge), or the database its silo URL names (silo).
type databaseStep struct{ d *Deps }

func (s *databaseStep) Name() string { return Database }

func (s *databaseStep) Do(ctx context.Context, r *saga.Run) error {
	t, err := s.d.targetOf(r.Spec)
	if err != nil {
		return err
	}
	switch r.Spec.Model {
	case tenant.Namespace:
		if _, err := s.d.Shared.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{t.schema}.Sanitize()); err != nil && !isDuplicate(err) {
			return fmt.Errorf("create schema %s: %w", t.schema, err)
		}
	case tenant.Bridge, tenant.Silo:
		if err := createDatabase(ctx, t.server, t.database); err != nil {
			return err
		}
	}
	// Pool tenants get no container: their rows go into the pool schema, which the migrations step
	// keeps, under row-level security.
	return r.Record(Database, madeDatabase{Model: r.Spec.Model, Host: t.host, Database: t.database, Schema: t.schema})
}

func (s *databaseStep) Undo(ctx context.Context, r *saga.Run) error {
	t, err := s.d.targetOf(r.Spec)
	if err != nil {
		return err
	}
	switch r.Spec.Model {
	case tenant.Pool:
		return deletePoolRows(ctx, s.d, t, r.Spec.TenantID)
	case tenant.Namespace:
		if _, err := s.d.Shared.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{t.schema}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %s: %w", t.schema, err)
		}
	case tenant.Bridge, tenant.Silo:
		return dropDatabase(ctx, t.server, t.database)
	}
	return nil
}

// deletePoolRows deletes every row of the tenant in every table of the pool schema that has a
// tenant_id, inside a tenantdb transaction scoped to the tenant (and by an explicit filter too: the
// provisioner may connect as a superuser, whom row-level security does not bind).
func deletePoolRows(ctx context.Context, d *Deps, t target, tenantID string) error {
	rows, err := d.Shared.Query(ctx, `SELECT c.relname FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
		WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attname = 'tenant_id' AND NOT a.attisdropped
		ORDER BY c.relname`, t.schema)
	if err != nil {
		return fmt.Errorf("list pool tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list pool tables: %w", err)
	}
	// Any order will do: the pool tables hold no foreign keys between them that would make it matter.
	return tenantdb.WithTenant(ctx, d.Shared, tenantID, func(tx pgx.Tx) error {
		for _, name := range tables {
			if _, err := tx.Exec(ctx, "DELETE FROM "+t.table(name)+" WHERE tenant_id = $1", tenantID); err != nil {
				return fmt.Errorf("delete tenant rows from %s: %w", name, err)
			}
		}
		return nil
	})
}

// createDatabase creates database name on the server unless it exists.
func createDatabase(ctx context.Context, server *pgx.ConnConfig, name string) error {
	conn, err := pgx.ConnectConfig(ctx, server)
	if err != nil {
		return fmt.Errorf("connect to database server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil && !isDuplicate(err) {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// dropDatabase drops database name, ending its sessions, if it exists.
func dropDatabase(ctx context.Context, server *pgx.ConnConfig, name string) error {
	conn, err := pgx.ConnectConfig(ctx, server)
	if err != nil {
		return fmt.Errorf("connect to database server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// isDuplicate reports whether err says the database or schema exists already (a concurrent create).
func isDuplicate(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "42P04" || pgErr.Code == "42P06" || pgErr.Code == "23505")
}
