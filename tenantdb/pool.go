package tenantdb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// resetSQL reads the connection's tenant setting and clears it at session level, in one round trip.
// The select list is evaluated left to right, so the first column is the value before the reset.
const resetSQL = "SELECT pg_catalog.current_setting('" + Setting + "', true), " +
	"pg_catalog.set_config('" + Setting + "', '', false)"

// clearedKey marks, in a connection's custom data, that WithTenant's commit has just cleared its
// tenant setting; the guard then skips its own reset on release.
const clearedKey = "tenantdb.cleared"

func markCleared(conn *pgx.Conn) { conn.PgConn().CustomData()[clearedKey] = true }

// takeCleared reports and removes the mark markCleared leaves.
func takeCleared(conn *pgx.Conn) bool {
	data := conn.PgConn().CustomData()
	cleared := data[clearedKey] == true
	delete(data, clearedKey)
	return cleared
}

// Option configures NewPool and Guard.
type Option func(*options)

type options struct {
	maxConns     int32
	resetTimeout time.Duration
	logger       *slog.Logger
	registerer   prometheus.Registerer
}

func defaultOptions() options {
	return options{resetTimeout: 5 * time.Second, logger: slog.New(slog.DiscardHandler)}
}

// WithMaxConns sets the pool size (pgxpool's default, or pool_max_conns in the URL, otherwise).
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

// WithResetTimeout bounds the reset a released connection goes through (default 5s); a connection
// whose reset fails or times out is closed, not reused.
func WithResetTimeout(d time.Duration) Option { return func(o *options) { o.resetTimeout = d } }

// WithLogger receives a warning each time a connection comes back carrying a session-level tenant
// setting: a bug in the application that the pool has just made harmless.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the pool guard's metrics (tenantdb_conn_resets_total).
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

func (o options) validate() error {
	if o.maxConns < 0 {
		return fmt.Errorf("tenantdb: max conns: must not be negative, got %d", o.maxConns)
	}
	if o.resetTimeout <= 0 {
		return fmt.Errorf("tenantdb: reset timeout: must be positive, got %s", o.resetTimeout)
	}
	if o.logger == nil {
		return errors.New("tenantdb: logger: must not be nil")
	}
	return nil
}

// NewPool opens a pool for the application role whose connections never carry a tenant setting when
// handed out (see Guard). Use it with WithTenant.
func NewPool(ctx context.Context, databaseURL string, opts ...Option) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("tenantdb: parse database url: %w", err)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
		cfg.MinConns = min(cfg.MinConns, o.maxConns)
		cfg.MinIdleConns = min(cfg.MinIdleConns, o.maxConns)
	}
	if err := guard(cfg, o); err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tenantdb: open pool: %w", err)
	}
	return pool, nil
}

// Guard installs, on a pool configuration you build yourself, the hooks that NewPool uses. A new
// connection and every released connection have app.tenant_id cleared at session level before they
// join the idle set, so a connection handed out never carries a tenant, even one that code set at
// session level (SET app.tenant_id, set_config(..., false)) or a role or database default. The reset
// is one round trip, made as the connection goes back, not on the way out; a connection whose reset
// fails is closed. A connection released by WithTenant after a successful commit skips the round
// trip: that commit has cleared the setting already. Hooks already in cfg still run. WithMaxConns is
// ignored here.
func Guard(cfg *pgxpool.Config, opts ...Option) error {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	return guard(cfg, o)
}

func guard(cfg *pgxpool.Config, o options) error {
	if err := o.validate(); err != nil {
		return err
	}
	m, err := newMetrics(o.registerer)
	if err != nil {
		return err
	}
	g := &poolGuard{timeout: o.resetTimeout, log: o.logger, metrics: m}

	afterConnect := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if afterConnect != nil {
			if err := afterConnect(ctx, conn); err != nil {
				return err
			}
		}
		return g.reset(ctx, conn, "connect")
	}
	afterRelease := cfg.AfterRelease
	cfg.AfterRelease = func(conn *pgx.Conn) bool {
		if takeCleared(conn) {
			g.metrics.resets.WithLabelValues("cleared_at_commit").Inc()
			return afterRelease == nil || afterRelease(conn)
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		defer cancel()
		if err := g.reset(ctx, conn, "release"); err != nil {
			return false
		}
		return afterRelease == nil || afterRelease(conn)
	}
	return nil
}

// poolGuard clears the tenant setting of connections going into the pool.
type poolGuard struct {
	timeout time.Duration
	log     *slog.Logger
	metrics *metrics
}

// reset clears app.tenant_id on conn at session level. when says where in the connection's life it
// runs ("connect" or "release"), for the log.
func (g *poolGuard) reset(ctx context.Context, conn *pgx.Conn, when string) error {
	results, err := conn.PgConn().Exec(ctx, resetSQL).ReadAll()
	if err == nil && (len(results) != 1 || len(results[0].Rows) != 1) {
		err = errors.New("unexpected reply")
	}
	if err != nil {
		g.metrics.resets.WithLabelValues("failed").Inc()
		g.log.Warn("tenantdb: reset tenant setting failed; closing connection",
			slog.String("when", when), slog.Any("error", err))
		return fmt.Errorf("tenantdb: reset tenant setting: %w", err)
	}
	if previous := results[0].Rows[0][0]; len(previous) > 0 {
		g.metrics.resets.WithLabelValues("cleared").Inc()
		g.log.Warn("tenantdb: connection carried a session-level tenant setting; cleared",
			slog.String("when", when), slog.String("tenant", string(previous)))
		return nil
	}
	g.metrics.resets.WithLabelValues("clean").Inc()
	return nil
}

type metrics struct {
	resets *prometheus.CounterVec
}

// newMetrics makes the guard's metrics and registers them on r (if not nil), sharing them with
// another pool that registered them on r first.
func newMetrics(r prometheus.Registerer) (*metrics, error) {
	resets := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantdb_conn_resets_total",
		Help: "Tenant setting resets of pooled connections, by outcome: cleared_at_commit (by " +
			"WithTenant's commit, no round trip), clean (nothing set), " +
			"cleared (a session-level tenant setting was found and cleared: an application bug), " +
			"failed (the connection was closed).",
	}, []string{"outcome"})
	if r != nil {
		if err := r.Register(resets); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return nil, fmt.Errorf("tenantdb: register metrics: %w", err)
			}
			resets = already.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return &metrics{resets: resets}, nil
}
