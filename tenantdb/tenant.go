package tenantdb

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Setting is the Postgres setting that names the tenant of the current transaction.
const Setting = "app.tenant_id"

// ErrInvalidTenantID is returned, wrapped, for a tenant id that is not a UUID (or is the nil UUID).
var ErrInvalidTenantID = errors.New("tenantdb: invalid tenant id")

// Beginner starts a transaction: *pgxpool.Pool and *pgx.Conn both are.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// ParseTenantID validates a tenant id and returns it in canonical form (lower-case, hyphenated).
func ParseTenantID(id string) (string, error) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 || u == uuid.Nil {
		return "", fmt.Errorf("%w: not a UUID (%d bytes)", ErrInvalidTenantID, len(id))
	}
	return u.String(), nil
}

// WithTenant runs fn in a transaction scoped to one tenant: app.tenant_id is set transaction-locally,
// so every query in fn sees and writes that tenant's rows only. The transaction commits if fn returns
// nil and rolls back if fn returns an error or panics; either way the setting ends with it. fn must
// not commit or roll back tx itself. db is a pool (NewPool's, or any *pgxpool.Pool) or a connection.
func WithTenant(ctx context.Context, db Beginner, tenantID string, fn func(pgx.Tx) error) error {
	return WithTenantTx(ctx, db, tenantID, pgx.TxOptions{}, fn)
}

// WithTenantTx is WithTenant with transaction options (isolation level, access mode, deferrable).
// opts.BeginQuery and opts.CommitQuery must be empty: WithTenantTx writes those statements itself.
func WithTenantTx(ctx context.Context, db Beginner, tenantID string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	id, err := ParseTenantID(tenantID)
	if err != nil {
		return err
	}
	if opts.BeginQuery != "" || opts.CommitQuery != "" {
		return errors.New("tenantdb: TxOptions.BeginQuery and CommitQuery are not supported")
	}
	begin, err := beginSQL(opts)
	if err != nil {
		return err
	}
	// The tenant goes out with BEGIN, in the same round trip. id is a canonical UUID, so it is safe to
	// write into the statement.
	opts.BeginQuery = begin + "; SELECT pg_catalog.set_config('" + Setting + "', '" + id + "', true)"
	// The commit also clears the session-level setting, in case fn made one (SET app.tenant_id):
	// the connection leaves clean at no extra round trip.
	opts.CommitQuery = "SELECT pg_catalog.set_config('" + Setting + "', '', false); COMMIT"

	pool, ok := db.(*pgxpool.Pool)
	if !ok {
		_, err := inTenantTx(ctx, db, id, opts, fn)
		return err
	}
	// Hold the connection ourselves, to tell the pool's guard (before release) that the commit has
	// just cleared its tenant setting, which saves the guard its own round trip.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("tenantdb: acquire for tenant %s: %w", id, err)
	}
	defer conn.Release()
	cleared, err := inTenantTx(ctx, conn.Conn(), id, opts, fn)
	if cleared {
		markCleared(conn.Conn())
	}
	return err
}

// inTenantTx runs fn in a transaction begun and committed with opts' statements, and reports whether
// the commit, clearing the session's tenant setting, succeeded.
func inTenantTx(ctx context.Context, db Beginner, id string, opts pgx.TxOptions, fn func(pgx.Tx) error) (cleared bool, err error) {
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return false, fmt.Errorf("tenantdb: begin for tenant %s: %w", id, err)
	}
	committed := false
	defer func() {
		// On an error or a panic in fn. Best effort: a failed rollback breaks the connection, and a
		// pool drops a broken connection.
		if !committed {
			_ = tx.Rollback(ctx)
		}
	}()
	if err := fn(tx); err != nil {
		return false, err
	}
	if tx.Conn().PgConn().TxStatus() == 'E' {
		// fn swallowed an error that aborted the transaction: COMMIT would only roll back.
		return false, fmt.Errorf("tenantdb: tenant %s: transaction aborted by an earlier error: %w", id, pgx.ErrTxCommitRollback)
	}
	committed = true // Commit ends the transaction even when it fails.
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("tenantdb: commit for tenant %s: %w", id, err)
	}
	return true, nil
}

// beginSQL is the BEGIN statement for opts (BeginQuery aside). Only pgx's own option values are
// accepted: they are written into the statement.
func beginSQL(opts pgx.TxOptions) (string, error) {
	var b strings.Builder
	b.WriteString("BEGIN")
	switch opts.IsoLevel {
	case "":
	case pgx.Serializable, pgx.RepeatableRead, pgx.ReadCommitted, pgx.ReadUncommitted:
		b.WriteString(" ISOLATION LEVEL " + string(opts.IsoLevel))
	default:
		return "", fmt.Errorf("tenantdb: unknown isolation level %q", opts.IsoLevel)
	}
	switch opts.AccessMode {
	case "":
	case pgx.ReadWrite, pgx.ReadOnly:
		b.WriteString(" " + string(opts.AccessMode))
	default:
		return "", fmt.Errorf("tenantdb: unknown access mode %q", opts.AccessMode)
	}
	switch opts.DeferrableMode {
	case "":
	case pgx.Deferrable, pgx.NotDeferrable:
		b.WriteString(" " + string(opts.DeferrableMode))
	default:
		return "", fmt.Errorf("tenantdb: unknown deferrable mode %q", opts.DeferrableMode)
	}
	return b.String(), nil
}
