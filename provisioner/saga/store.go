package saga

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantgate/tenantgate/provisioner/dbmigrate"
)

// Schema holds the provisioner's own tables (sagas, their journal, idempotency keys, emails, DNS
// records) and their goose version table, apart from the registry's schema.
const Schema = "tenantgate_provisioner"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate brings the provisioner's schema up to date. Safe from many replicas at once.
func Migrate(ctx context.Context, connCfg *pgx.ConnConfig) error {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	_, err = dbmigrate.Up(ctx, connCfg, Schema, files)
	return err
}

// Execer runs a statement: a pool, a connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Querier runs queries: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// row is a saga as stored, with the lease this worker holds on it.
type row struct {
	id, tenantID string
	kind         Kind
	state        State
	steps        []string
	pivot        int
	step         int
	phase        string
	attempt      int
	spec         Spec
	made         map[string]json.RawMessage
	lastError    string
	lease        string
	// started: this worker has written the current step as started already (with the end of the
	// step before), so its do runs without another write first.
	started bool
}

const sagaColumns = `id::text, tenant_id::text, kind, state, steps, pivot, step, phase, attempt, spec, made, last_error`

func scanRow(r pgx.Row, dst *row) error {
	var spec, made []byte
	if err := r.Scan(&dst.id, &dst.tenantID, &dst.kind, &dst.state, &dst.steps, &dst.pivot, &dst.step,
		&dst.phase, &dst.attempt, &spec, &made, &dst.lastError); err != nil {
		return err
	}
	if err := json.Unmarshal(spec, &dst.spec); err != nil {
		return fmt.Errorf("saga %s: spec: %w", dst.id, err)
	}
	return json.Unmarshal(made, &dst.made)
}

// insert stores a new saga in state running.
func insert(ctx context.Context, db Execer, kind Kind, spec Spec, plan Plan, hold time.Duration) (string, error) {
	id := uuid.NewString()
	rawSpec, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	_, err = db.Exec(ctx, `INSERT INTO `+Schema+`.sagas (id, tenant_id, kind, state, steps, pivot, spec, next_run_at)
		VALUES ($1, $2, $3, 'running', $4, $5, $6, now() + make_interval(secs => $7))`,
		id, spec.TenantID, kind, plan.Steps, plan.Pivot, rawSpec, hold.Seconds())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return "", ErrInFlight
	}
	if err != nil {
		return "", fmt.Errorf("store saga: %w", err)
	}
	return id, nil
}

// claim leases the most overdue saga nobody holds. Row locks with SKIP LOCKED let replicas claim at
// once without waiting on each other; the recheck of the lease under the lock keeps two from taking
// the same saga.
func claim(ctx context.Context, db Querier, lease time.Duration) (*row, error) {
	token := uuid.NewString()
	var r row
	err := scanRow(db.QueryRow(ctx, `UPDATE `+Schema+`.sagas SET lease_token = $1,
			lease_until = now() + make_interval(secs => $2), updated_at = now()
		WHERE id = (SELECT id FROM `+Schema+`.sagas
			WHERE state IN ('running', 'compensating') AND next_run_at <= now()
			  AND (lease_until IS NULL OR lease_until < now())
			ORDER BY next_run_at LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING `+sagaColumns, token, lease.Seconds()), &r)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim saga: %w", err)
	}
	r.lease = token
	return &r, nil
}

// extend renews the lease; errLeaseLost when another replica holds the saga now.
func extend(ctx context.Context, db Execer, r *row, lease time.Duration) error {
	tag, err := db.Exec(ctx, `UPDATE `+Schema+`.sagas SET lease_until = now() + make_interval(secs => $3)
		WHERE id = $1 AND lease_token = $2`, r.id, r.lease, lease.Seconds())
	if err != nil {
		return fmt.Errorf("extend saga lease: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return errLeaseLost
	}
	return nil
}

// change is one write of a saga's progress, with the journal events that go with it.
type change struct {
	state     State
	step      int
	phase     string
	attempt   int
	made      map[string]json.RawMessage
	lastError string
	retryIn   time.Duration // >0: run again after this long (with release)
	release   bool          // release the lease (final states, retries)

	events []eventRow
}

type eventRow struct {
	step    string
	action  Action
	event   string
	attempt int
	err     string
}

// write stores ch if this worker still holds the lease, with its journal events, in one statement
// (one round trip, one transaction): the events are inserted only if the saga row was updated.
func write(ctx context.Context, db Execer, r *row, ch change) error {
	made, err := json.Marshal(ch.made)
	if err != nil {
		return err
	}
	const update = `UPDATE ` + Schema + `.sagas SET state = $3, step = $4, phase = $5, attempt = $6,
			made = $7, last_error = $8, updated_at = now(),
			next_run_at = now() + make_interval(secs => $9),
			lease_token = CASE WHEN $10 THEN NULL ELSE lease_token END,
			lease_until = CASE WHEN $10 THEN NULL ELSE lease_until END
		WHERE id = $1 AND lease_token = $2`
	args := []any{r.id, r.lease, ch.state, ch.step, ch.phase, ch.attempt, made, ch.lastError, ch.retryIn.Seconds(), ch.release}
	want := int64(1)
	sql := update
	if n := len(ch.events); n > 0 {
		steps, actions, events, errs := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		attempts := make([]int32, n)
		for i, ev := range ch.events {
			steps[i], actions[i], events[i], attempts[i], errs[i] = ev.step, string(ev.action), ev.event, int32(ev.attempt), ev.err
		}
		sql = `WITH u AS (` + update + ` RETURNING id)
			INSERT INTO ` + Schema + `.saga_events (saga_id, step, action, event, attempt, error)
			SELECT u.id, e.step, e.action, e.event, e.attempt, e.error FROM u,
				unnest($11::text[], $12::text[], $13::text[], $14::int[], $15::text[]) WITH ORDINALITY AS e(step, action, event, attempt, error, n)
			ORDER BY e.n`
		args = append(args, steps, actions, events, attempts, errs)
		want = int64(n)
	}
	tag, err := db.Exec(ctx, sql, args...)
	if err != nil {
		return fmt.Errorf("write saga: %w", err)
	}
	if tag.RowsAffected() != want {
		return errLeaseLost
	}
	r.state, r.step, r.phase, r.attempt, r.made, r.lastError = ch.state, ch.step, ch.phase, ch.attempt, ch.made, ch.lastError
	return nil
}

// Latest returns the newest saga of a tenant.
func latest(ctx context.Context, db Querier, tenantID string) (Status, error) {
	var s Status
	var spec []byte
	err := db.QueryRow(ctx, `SELECT id::text, kind, state, steps, step, attempt, last_error, next_run_at, created_at, updated_at, spec
		FROM `+Schema+`.sagas WHERE tenant_id = $1 ORDER BY created_at DESC, id LIMIT 1`, tenantID).
		Scan(&s.ID, &s.Kind, &s.State, &s.Steps, &s.Step, &s.Attempt, &s.LastError, &s.NextRunAt, &s.CreatedAt, &s.UpdatedAt, &spec)
	if errors.Is(err, pgx.ErrNoRows) {
		return Status{}, ErrNotFound
	}
	if err != nil {
		return Status{}, fmt.Errorf("read saga: %w", err)
	}
	if err := json.Unmarshal(spec, &s.Spec); err != nil {
		return Status{}, fmt.Errorf("read saga %s: spec: %w", s.ID, err)
	}
	return s, nil
}
