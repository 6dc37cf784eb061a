package tenantdb

import (
	"context"
	_ "embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed sql/install.sql
var installSQL string

// Execer runs a statement: *pgx.Conn, *pgxpool.Pool and pgx.Tx all are.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier runs a query: *pgx.Conn, *pgxpool.Pool and pgx.Tx all are.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// DB runs statements and queries: *pgx.Conn, *pgxpool.Pool and pgx.Tx all are.
type DB interface {
	Execer
	Querier
}

// InstallSQL is the SQL that Install runs, for projects that apply it with their own migration tool.
// It is idempotent.
func InstallSQL() string { return installSQL }

// Install creates, or brings up to date, the tenantdb schema and its functions: set_tenant(uuid),
// current_tenant() and protect(regclass, name). It is idempotent and safe to run concurrently; run it
// as the role that owns the tenant-scoped tables.
func Install(ctx context.Context, db Execer) error {
	// No arguments: pgx sends it with the simple protocol, as one implicit transaction.
	if _, err := db.Exec(ctx, installSQL); err != nil {
		return fmt.Errorf("tenantdb: install: %w", err)
	}
	return nil
}

// Protect puts a table under tenant isolation: row-level security enabled and forced (the owner is
// bound too) and the tenant_isolation policy, for the table and each of its partitions. With a
// non-empty appRole the role is also granted what it needs to use the table (schema usage, SELECT,
// INSERT, UPDATE, DELETE, its serial sequences). The table must have a tenant_id uuid column, and
// Protect must run as its owner after Install. It is idempotent. table may be schema-qualified and is
// read as SQL ("public.notes", `"Mixed Case"`).
func Protect(ctx context.Context, db Execer, table, appRole string) error {
	var role any
	if appRole != "" {
		role = appRole
	}
	if _, err := db.Exec(ctx, "SELECT tenantdb.protect($1::regclass, $2::name)", table, role); err != nil {
		return fmt.Errorf("tenantdb: protect %s: %w", table, err)
	}
	return nil
}
