package steps

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/saga"
)

// target is where a tenant's data lives.
type target struct {
	model tenant.Model
	// conn reaches the tenant's database (for pool and namespace: the shared one).
	conn *pgx.ConnConfig
	// server reaches the server's maintenance database, to create and drop the tenant's database
	// (bridge and silo only).
	server *pgx.ConnConfig
	// database and schema hold the tenant's tables.
	database, schema string
	// host is the database server, for the record (no credentials).
	host string
}

// ownDatabase reports whether the tenant has a database of its own.
func (t target) ownDatabase() bool { return t.model == tenant.Bridge || t.model == tenant.Silo }

// table is the schema-qualified name of a tenant table.
func (t target) table(name string) string { return pgx.Identifier{t.schema, name}.Sanitize() }

// targetOf works out where spec's data lives; it is fixed by the spec and the configuration.
func (d *Deps) targetOf(spec saga.Spec) (target, error) {
	t := target{model: spec.Model}
	switch spec.Model {
	case tenant.Pool, tenant.Namespace:
		if d.Shared == nil {
			return t, fmt.Errorf("%w: no shared database", ErrModelUnavailable)
		}
		t.conn = d.Shared.Config().ConnConfig
		t.database, t.host = t.conn.Database, fmt.Sprintf("%s:%d", t.conn.Host, t.conn.Port)
		t.schema = d.Databases.PoolSchema
		if spec.Model == tenant.Namespace {
			t.schema = identName(d.Databases.NamePrefix, spec.Slug, spec.TenantID)
		}
	case tenant.Bridge:
		server, err := pgx.ParseConfig(d.Databases.ServerURL.Value())
		if err != nil {
			return t, fmt.Errorf("provisioner.database.server_url: %w", err)
		}
		t.server = server
		t.conn = server.Copy()
		t.conn.Database = identName(d.Databases.NamePrefix, spec.Slug, spec.TenantID)
		t.database, t.schema, t.host = t.conn.Database, "public", fmt.Sprintf("%s:%d", server.Host, server.Port)
	case tenant.Silo:
		raw := strings.NewReplacer("{slug}", spec.Slug, "{id}", spec.TenantID).Replace(d.Databases.SiloURLTemplate.Value())
		conn, err := pgx.ParseConfig(raw)
		if err != nil {
			return t, fmt.Errorf("provisioner.database.silo_url_template: %w", err)
		}
		t.conn = conn
		t.server = conn.Copy()
		t.server.Database = "postgres"
		t.database, t.schema, t.host = conn.Database, "public", fmt.Sprintf("%s:%d", conn.Host, conn.Port)
	default:
		return t, fmt.Errorf("%w: %q", ErrModelUnavailable, spec.Model)
	}
	return t, nil
}

// withTenantData runs fn against the tenant's database: the shared pool for pool and namespace
// tenants, a connection of its own otherwise. gone is true when the database or schema does not
// exist (nothing to read or remove).
func (d *Deps) withTenantData(ctx context.Context, t target, fn func(db beginner) error) (gone bool, err error) {
	if !t.ownDatabase() {
		err = fn(d.Shared)
	} else {
		conn, cerr := pgx.ConnectConfig(ctx, t.conn)
		if cerr != nil {
			if isMissing(cerr) {
				return true, nil
			}
			return false, fmt.Errorf("connect to tenant database: %w", cerr)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		err = fn(conn)
	}
	if isMissing(err) {
		return true, nil
	}
	return false, err
}

// beginner starts transactions: a pool or a connection.
type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// isMissing reports whether err says a database, schema or table does not exist.
func isMissing(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "3D000", "3F000", "42P01": // invalid_catalog_name, invalid_schema_name, undefined_table
		return true
	}
	return false
}
