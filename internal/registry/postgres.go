package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// notifyChannel is the LISTEN/NOTIFY channel of registry changes. The payload is the new revision.
const notifyChannel = "tenantgate_tenants"

// WatchApplicationName is the application_name of the watcher's dedicated connection, so operators
// (and tests) can find it in pg_stat_activity.
const WatchApplicationName = "tenantgate-registry-watch"

// storedColumns are the columns of tenantgate.tenants that a write sets, in insert order.
const storedColumns = `id, slug, name, plan, model, status, upstream, resources, last_error, revision, created_at, updated_at`

// tenantColumns is the select list scanTenant reads, in its order. The server takes the fields out of
// the two jsonb documents, which costs less in all than encoding/json decoding them on this side (it
// matters when All loads 100,000 tenants); only a non-empty endpoint list comes back as JSON. Every
// field of tenant.Upstream and tenant.Resources must appear here under its JSON name
// (TestPostgres_StoresEveryUpstreamAndResourcesField fails otherwise).
const tenantColumns = `id, slug, name, plan, model, status,
	coalesce(upstream->>'cluster', ''), upstream->'endpoints',
	coalesce(resources->>'database', ''), coalesce(resources->>'schema', ''),
	coalesce(resources->>'namespace', ''), coalesce(resources->>'domain', ''),
	last_error, revision, created_at, updated_at`

// Postgres is the registry in PostgreSQL, in schema tenantgate (see Migrate), with a change feed on
// LISTEN/NOTIFY.
//
// Every write runs in a transaction that first takes one transaction-level advisory lock, then draws
// the next revision from a sequence, writes, NOTIFYs and commits; the lock is released only after the
// commit is visible. Writes therefore commit in revision order. That is what makes the change feed
// exact: a watcher asks for "revision > last seen", and without the lock a write that drew revision 7
// could commit after one that drew 8; a watcher that read 8 in between would then skip 7 forever.
// Registry writes are rare (tenant lifecycle events), so serializing them costs nothing that matters.
type Postgres struct {
	pool    *pgxpool.Pool
	opts    postgresOptions
	metrics *postgresMetrics

	stop     context.Context // ended by Close; stops the watchers
	stopAll  context.CancelFunc
	mu       sync.Mutex // guards closed and the watchers' Add
	closed   bool
	watchers sync.WaitGroup
}

var _ Registry = (*Postgres)(nil)

// PostgresOption configures a Postgres registry.
type PostgresOption func(*postgresOptions)

type postgresOptions struct {
	log          *slog.Logger
	registerer   prometheus.Registerer
	pollInterval time.Duration
	minBackoff   time.Duration
	maxBackoff   time.Duration
}

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) PostgresOption {
	return func(o *postgresOptions) { o.log = l }
}

// WithRegisterer registers the registry's metrics with r (default: not registered).
func WithRegisterer(r prometheus.Registerer) PostgresOption {
	return func(o *postgresOptions) { o.registerer = r }
}

// WithPollInterval sets how often a watcher looks for changes when no notification arrives, a safety
// net under LISTEN/NOTIFY (default 30s).
func WithPollInterval(d time.Duration) PostgresOption {
	return func(o *postgresOptions) { o.pollInterval = d }
}

// WithReconnectBackoff bounds the wait between a watcher's reconnection attempts: it starts at min and
// doubles up to max (default 50ms to 5s).
func WithReconnectBackoff(minWait, maxWait time.Duration) PostgresOption {
	return func(o *postgresOptions) { o.minBackoff, o.maxBackoff = minWait, maxWait }
}

func (o postgresOptions) validate() error {
	if o.pollInterval <= 0 {
		return errors.New("poll interval must be positive")
	}
	if o.minBackoff <= 0 || o.maxBackoff < o.minBackoff {
		return errors.New("reconnect backoff needs 0 < min <= max")
	}
	return nil
}

// OpenPostgres connects to the registry at databaseURL, whose schema Migrate must have brought up to
// date. Pool settings come from the URL (pool_max_conns and the like). Close releases it.
func OpenPostgres(ctx context.Context, databaseURL string, opts ...PostgresOption) (*Postgres, error) {
	o := postgresOptions{
		log:          slog.Default(),
		pollInterval: 30 * time.Second,
		minBackoff:   50 * time.Millisecond,
		maxBackoff:   5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("open postgres registry: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("open postgres registry: parse database url: %w", err)
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "tenantgate-registry"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres registry: %w", err)
	}
	metrics, err := newPostgresMetrics(o.registerer)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres registry: %w", err)
	}
	p := &Postgres{pool: pool, opts: o, metrics: metrics}
	p.stop, p.stopAll = context.WithCancel(context.Background())
	return p, nil
}

// Close stops the watchers, waits for them, and closes the pool. Calls after the first do nothing.
func (p *Postgres) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.stopAll()
	p.watchers.Wait()
	p.pool.Close()
}

func (p *Postgres) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Ping implements Registry.
func (p *Postgres) Ping(ctx context.Context) error {
	if p.isClosed() {
		return ErrClosed
	}
	if err := p.pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping tenant registry: %w", err)
	}
	return nil
}

// Get implements Registry.
func (p *Postgres) Get(ctx context.Context, id string) (tenant.Tenant, error) {
	if p.isClosed() {
		return tenant.Tenant{}, ErrClosed
	}
	if tenant.CheckID(id) != nil {
		return tenant.Tenant{}, ErrNotFound // no tenant ever had such an id
	}
	return p.getOne(ctx, "id", id)
}

// GetBySlug implements Registry.
func (p *Postgres) GetBySlug(ctx context.Context, slug string) (tenant.Tenant, error) {
	if p.isClosed() {
		return tenant.Tenant{}, ErrClosed
	}
	return p.getOne(ctx, "slug", slug)
}

// getOne reads the tenant whose column (id or slug, both unique) equals value.
func (p *Postgres) getOne(ctx context.Context, column, value string) (tenant.Tenant, error) {
	var t tenant.Tenant
	row := p.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenantgate.tenants WHERE `+column+` = $1`, value)
	if err := scanTenant(row, &t); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return tenant.Tenant{}, ErrNotFound
		}
		return tenant.Tenant{}, fmt.Errorf("get tenant by %s: %w", column, err)
	}
	return t, nil
}

// List implements Registry.
func (p *Postgres) List(ctx context.Context, q ListQuery) (Page, error) {
	if p.isClosed() {
		return Page{}, ErrClosed
	}
	q = q.Normalize()
	var (
		where []string
		args  []any
	)
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if q.After != "" {
		if tenant.CheckID(q.After) != nil {
			return Page{}, fmt.Errorf("%w: %w", tenant.ErrInvalid,
				&tenant.FieldError{Field: "after", Reason: "page token must be a tenant id"})
		}
		add("id > $%d", q.After)
	}
	if len(q.Status) > 0 {
		statuses := make([]string, len(q.Status))
		for i, s := range q.Status {
			statuses[i] = string(s)
		}
		add("status = ANY($%d)", statuses)
	}
	if q.Plan != "" {
		add("plan = $%d", q.Plan)
	}
	if q.Model != "" {
		add("model = $%d", string(q.Model))
	}
	sql := `SELECT ` + tenantColumns + ` FROM tenantgate.tenants`
	if len(where) > 0 {
		sql += ` WHERE ` + strings.Join(where, " AND ")
	}
	// One row more than the page tells whether another page follows.
	args = append(args, q.Limit+1)
	sql += fmt.Sprintf(` ORDER BY id LIMIT $%d`, len(args))

	tenants, err := p.queryTenants(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	var page Page
	if len(tenants) > q.Limit {
		tenants = tenants[:q.Limit]
		page.Next = tenants[q.Limit-1].ID
	}
	page.Tenants = tenants
	return page, nil
}

// All implements Registry. It reads every tenant in one statement, so from one snapshot; the highest
// revision among them is the registry revision of that snapshot, because the latest write always
// leaves its revision on the tenant it wrote, and writes commit in revision order. The planner's row
// estimate, sent in the same round trip, sizes the result up front.
func (p *Postgres) All(ctx context.Context) ([]tenant.Tenant, int64, error) {
	if p.isClosed() {
		return nil, 0, ErrClosed
	}
	batch := &pgx.Batch{}
	batch.Queue(`SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'tenantgate.tenants'::regclass`)
	batch.Queue(`SELECT ` + tenantColumns + ` FROM tenantgate.tenants`)
	results := p.pool.SendBatch(ctx, batch)
	defer results.Close()
	var estimate int64
	if err := results.QueryRow().Scan(&estimate); err != nil {
		return nil, 0, fmt.Errorf("load all tenants: %w", err)
	}
	rows, err := results.Query()
	if err != nil {
		return nil, 0, fmt.Errorf("load all tenants: %w", err)
	}
	tenants, err := collectTenants(rows, int(min(estimate, maxPrealloc)))
	if err != nil {
		return nil, 0, fmt.Errorf("load all tenants: %w", err)
	}
	var revision int64
	for i := range tenants {
		revision = max(revision, tenants[i].Revision)
	}
	return tenants, revision, nil
}

// maxPrealloc caps the room All reserves on the planner's word.
const maxPrealloc = 1 << 20

func (p *Postgres) queryTenants(ctx context.Context, sql string, args ...any) ([]tenant.Tenant, error) {
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return collectTenants(rows, 0)
}

// collectTenants scans every row into a tenant and closes rows. capacity sizes the result.
func collectTenants(rows pgx.Rows, capacity int) ([]tenant.Tenant, error) {
	defer rows.Close()
	out := make([]tenant.Tenant, 0, capacity)
	var in interner
	for rows.Next() {
		out = append(out, tenant.Tenant{})
		if err := scanTenant(rows, &out[len(out)-1]); err != nil {
			return nil, err
		}
		in.intern(&out[len(out)-1])
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// scanTenant reads one row of tenantColumns into t.
func scanTenant(row pgx.Row, t *tenant.Tenant) error {
	var endpoints []byte
	err := row.Scan(&t.ID, &t.Slug, &t.Name, &t.Plan, (*string)(&t.Model), (*string)(&t.Status),
		&t.Upstream.Cluster, &endpoints,
		&t.Resources.Database, &t.Resources.Schema, &t.Resources.Namespace, &t.Resources.Domain,
		&t.LastError, &t.Revision, &t.CreatedAt, &t.UpdatedAt)
	if err != nil {
		return err
	}
	if len(endpoints) > 0 {
		if t.Upstream.Endpoints, err = decodeEndpoints(endpoints); err != nil {
			return fmt.Errorf("tenant %s: upstream endpoints: %w", t.ID, err)
		}
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return nil
}

// interner makes the tenants of one read share the strings that few distinct values take (model,
// status, plan), so a snapshot of many tenants does not hold a copy per tenant. Plans are named in
// config, so the map stays small.
type interner struct {
	plans map[string]string
}

func (in *interner) intern(t *tenant.Tenant) {
	for _, m := range tenant.Models {
		if t.Model == m {
			t.Model = m
			break
		}
	}
	for _, s := range tenant.Statuses {
		if t.Status == s {
			t.Status = s
			break
		}
	}
	if in.plans == nil {
		in.plans = make(map[string]string)
	}
	if p, ok := in.plans[t.Plan]; ok {
		t.Plan = p
	} else if len(in.plans) < 1000 {
		in.plans[t.Plan] = t.Plan
	}
}

// Create implements Registry.
func (p *Postgres) Create(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error) {
	if p.isClosed() {
		return tenant.Tenant{}, ErrClosed
	}
	if t.Status == "" {
		t.Status = tenant.Pending
	}
	if err := t.Validate(); err != nil {
		p.metrics.write("create", err)
		return tenant.Tenant{}, err
	}
	now := p.now()
	t.CreatedAt, t.UpdatedAt = now, now
	t.Upstream.Endpoints = append([]tenant.Endpoint(nil), t.Upstream.Endpoints...)
	rev, err := p.write(ctx, func(tx pgx.Tx) (int64, error) {
		var rev int64
		err := tx.QueryRow(ctx, `
			INSERT INTO tenantgate.tenants (`+storedColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nextval('tenantgate.revision'), $10, $10)
			RETURNING revision`,
			t.ID, t.Slug, t.Name, t.Plan, string(t.Model), string(t.Status), t.Upstream, t.Resources,
			t.LastError, now,
		).Scan(&rev)
		return rev, existsError(err, t)
	})
	p.metrics.write("create", err)
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("create tenant %s: %w", t.ID, err)
	}
	t.Revision = rev
	return t, nil
}

// existsError turns a unique violation on the id or the slug into ErrExists.
func existsError(err error, t tenant.Tenant) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		return err
	}
	switch pgErr.ConstraintName {
	case "tenants_pkey":
		return fmt.Errorf("%w: id %s", ErrExists, t.ID)
	case "tenants_slug_key":
		return fmt.Errorf("%w: slug %s", ErrExists, t.Slug)
	}
	return err
}

// Update implements Registry.
func (p *Postgres) Update(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error) {
	if p.isClosed() {
		return tenant.Tenant{}, ErrClosed
	}
	if tenant.CheckID(t.ID) != nil {
		p.metrics.write("update", ErrNotFound)
		return tenant.Tenant{}, ErrNotFound
	}
	now := p.now()
	t.Upstream.Endpoints = append([]tenant.Endpoint(nil), t.Upstream.Endpoints...)
	rev, err := p.write(ctx, func(tx pgx.Tx) (int64, error) {
		var stored tenant.Tenant
		row := tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenantgate.tenants WHERE id = $1 FOR UPDATE`, t.ID)
		if err := scanTenant(row, &stored); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, ErrNotFound
			}
			return 0, err
		}
		if stored.Revision != t.Revision {
			return 0, ErrConflict
		}
		if err := checkUpdate(&stored, &t); err != nil {
			return 0, err
		}
		t.CreatedAt, t.UpdatedAt = stored.CreatedAt, now
		var rev int64
		err := tx.QueryRow(ctx, `
			UPDATE tenantgate.tenants
			SET name = $2, plan = $3, status = $4, upstream = $5, resources = $6, last_error = $7,
			    revision = nextval('tenantgate.revision'), updated_at = $8
			WHERE id = $1
			RETURNING revision`,
			t.ID, t.Name, t.Plan, string(t.Status), t.Upstream, t.Resources, t.LastError, now,
		).Scan(&rev)
		return rev, err
	})
	p.metrics.write("update", err)
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("update tenant %s: %w", t.ID, err)
	}
	t.Revision = rev
	return t, nil
}

// write runs one registry write: in a transaction that holds the revision lock (so revisions commit in
// order, see Postgres), fn writes one tenant and returns the revision it drew; write then NOTIFYs the
// watchers and commits.
func (p *Postgres) write(ctx context.Context, fn func(tx pgx.Tx) (int64, error)) (int64, error) {
	var rev int64
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, revisionLockKey); err != nil {
			return fmt.Errorf("take revision lock: %w", err)
		}
		var err error
		if rev, err = fn(tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, strconv.FormatInt(rev, 10)); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		return nil
	})
	return rev, err
}

// now is the write time, at the microsecond precision Postgres stores.
func (p *Postgres) now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
