package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// DefaultDomain is the rate-limit domain Tenantgate answers for.
const DefaultDomain = "tenantgate"

// Config is what a Limiter is built from. Validate names the bad field.
type Config struct {
	// Store keeps the counters (NewRedisStore or NewMemoryStore).
	Store Store
	// Plans by name (config.Config.Plans).
	Plans map[string]config.Plan
	// Tenants looks tenants up by id; the tenant's plan and status come from here, never from a
	// request.
	Tenants TenantLookup
	// Domain answered; requests for any other domain are allowed without counting. Default
	// "tenantgate".
	Domain string
	// Timeout bounds every store call. Default 50ms.
	Timeout time.Duration
	// OverLimitCacheSize bounds the local over-limit cache (entries); 0 turns it off.
	OverLimitCacheSize int
	// BreakerFailures consecutive store failures make the limiter skip the store for BreakerCooldown.
	// Defaults 3 and 250ms.
	BreakerFailures int
	BreakerCooldown time.Duration
	// Metrics registers the limiter's metrics; nil registers none.
	Metrics prometheus.Registerer
	Log     *slog.Logger
}

// TenantLookup finds a tenant by id (the tenant snapshot satisfies it through LookupFunc).
type TenantLookup interface {
	ByID(id string) (*tenant.Tenant, bool)
}

// LookupFunc adapts a function to TenantLookup.
type LookupFunc func(id string) (*tenant.Tenant, bool)

// ByID implements TenantLookup.
func (f LookupFunc) ByID(id string) (*tenant.Tenant, bool) { return f(id) }

// Validate checks the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("ratelimit config: Store is required")
	case c.Tenants == nil:
		return errors.New("ratelimit config: Tenants is required")
	case len(c.Plans) == 0:
		return errors.New("ratelimit config: Plans must hold at least one plan")
	case c.Timeout < 0:
		return errors.New("ratelimit config: Timeout must not be negative")
	case c.OverLimitCacheSize < 0:
		return errors.New("ratelimit config: OverLimitCacheSize must not be negative")
	}
	return nil
}

// Limiter decides rate-limit requests: Envoy's RateLimitService (ShouldRateLimit) and the purge
// of a deleted tenant's counters.
type Limiter struct {
	store   Store
	plans   *planSet
	texts   windowTexts
	tenants TenantLookup
	domain  string
	timeout time.Duration
	cache   *overLimitCache
	breaker *breaker
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time

	purgeQueue     chan string
	sawInitialLoad atomic.Bool
}

// New builds a Limiter.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	plans, err := newPlanSet(cfg.Plans)
	if err != nil {
		return nil, fmt.Errorf("ratelimit plans: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("ratelimit metrics: %w", err)
	}
	l := &Limiter{
		store:   cfg.Store,
		plans:   plans,
		texts:   newWindowTexts(plans),
		tenants: cfg.Tenants,
		domain:  cmpOr(cfg.Domain, DefaultDomain),
		timeout: cmpOr(cfg.Timeout, 50*time.Millisecond),
		cache:   newOverLimitCache(cfg.OverLimitCacheSize),
		breaker: newBreaker(cmpOr(cfg.BreakerFailures, 3), cmpOr(cfg.BreakerCooldown, 250*time.Millisecond)),
		metrics: m,
		log:     cfg.Log,
		now:     time.Now,

		purgeQueue: make(chan string, purgeQueueSize),
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	return l, nil
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Run purges the counters of deleted tenants (see TenantsChanged) and probes the store while the
// breaker is open, so that the limiter goes back to the store as soon as it answers. It returns when
// ctx ends.
func (l *Limiter) Run(ctx context.Context) error {
	tick := time.NewTicker(l.timeout * 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-l.purgeQueue:
			l.purgeQueued(ctx, id)
			continue
		case <-tick.C:
		}
		open := l.breaker.isOpen()
		if open {
			pctx, cancel := context.WithTimeout(ctx, l.timeout)
			if err := l.store.Ping(pctx); err == nil {
				l.breaker.success()
				l.log.Info("rate-limit store reachable again")
				open = false
			}
			cancel()
		}
		l.metrics.breakerOpen.Set(boolGauge(open))
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Ping is the readiness check: it fails while the store is unreachable.
func (l *Limiter) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(l.timeout, 250*time.Millisecond))
	defer cancel()
	if err := l.store.Ping(ctx); err != nil {
		return fmt.Errorf("rate-limit store is down: %w", err)
	}
	return nil
}

// PurgeTenant removes every counter of the tenant, in the store and in the local over-limit cache.
// The provisioner calls it when a tenant is deleted; the limiter also calls it when the snapshot
// shows a tenant deleted.
func (l *Limiter) PurgeTenant(ctx context.Context, tenantID string) error {
	if tenantID == "" || tenantID == unknownTenant {
		return fmt.Errorf("purge rate-limit counters: invalid tenant id %q", tenantID)
	}
	l.cache.purgePrefix(tenantKeyPrefix(tenantID))
	if err := l.store.PurgeTenant(ctx, tenantID); err != nil {
		return err
	}
	l.log.Info("rate-limit counters purged", slog.String("tenant", tenantID))
	return nil
}

// outcome is how a request was decided.
type outcome int

const (
	fromStore       outcome = iota // the store counted and decided
	fromCache                      // refused by the local over-limit cache
	fromFailureMode                // the store failed or was skipped: each plan's failure mode
	refused                        // refused before counting (a request naming several tenants)
)

// decision is the result of deciding one request's counters.
type decision struct {
	Outcome  outcome
	Admitted bool
	NowMS    int64
	States   []state // per counter; from the store, or as known to the cache
}

// decide runs the counters of one request through the cache, the breaker and the store.
func (l *Limiter) decide(ctx context.Context, q *query) (decision, error) {
	if q.Refuse {
		l.metrics.overRefused.Inc()
		return decision{Outcome: refused}, nil
	}
	start := l.now()
	startMS := start.UnixMilli()
	if d, ok := l.fromCache(q, startMS); ok {
		l.metrics.overCache.Inc()
		return d, nil
	}
	if !l.breaker.allow() {
		return l.failureMode(q), nil
	}
	var res applied
	var err error
	if ds, ok := l.store.(deadlineStore); ok {
		res, err = ds.applyBy(ctx, start.Add(l.timeout), q.Tenant, q.Counters)
	} else {
		sctx, cancel := context.WithTimeout(ctx, l.timeout)
		res, err = l.store.Apply(sctx, q.Tenant, q.Counters)
		cancel()
	}
	l.metrics.storeSeconds.Observe(l.now().Sub(start).Seconds())
	if err != nil {
		if ctx.Err() != nil {
			// Envoy gave up on the call: not the store's fault.
			l.breaker.abandoned()
			return decision{}, ctx.Err()
		}
		if l.breaker.failure() {
			l.log.Warn("rate-limit store failing: deciding by each plan's failure mode until it answers",
				slog.Any("error", err), slog.Duration("cooldown", l.breaker.cooldown))
		} else {
			l.log.Debug("rate-limit store failed", slog.Any("error", err))
		}
		return l.failureMode(q), nil
	}
	l.breaker.success()
	d := decision{Outcome: fromStore, Admitted: res.Admitted, NowMS: res.NowMS, States: q.states()}
	for i, c := range q.Counters {
		st := c.Window.stateAfter(res.NowMS, res.Counts[i], c.Hits, res.Admitted)
		d.States[i] = st
		if st.Used >= c.Window.Limit && st.ResetIn > 0 {
			// Known over until the oldest counted sub-window leaves. Measured from the local time
			// before the call, so the entry ends no later than it does in the store.
			l.cache.add(cacheKey(c), startMS+st.ResetIn.Milliseconds(), startMS)
		}
	}
	if res.Admitted {
		l.metrics.okStore.Inc()
	} else {
		l.metrics.overStore.Inc()
	}
	return d, nil
}

// fromCache refuses the request without the store when one of its counters with hits is known over.
func (l *Limiter) fromCache(q *query, nowMS int64) (decision, bool) {
	if l.cache == nil {
		return decision{}, false
	}
	for i, c := range q.Counters {
		if c.Hits <= 0 {
			continue
		}
		until := l.cache.overUntil(c, nowMS)
		if until <= nowMS {
			continue
		}
		d := decision{Outcome: fromCache, NowMS: nowMS, States: q.states()}
		for j, o := range q.Counters {
			// Only the cached counter's state is known; the others are reported with no quota
			// promised (remaining 0), which is true of the request as a whole.
			d.States[j] = state{Window: o.Window, Used: o.Window.Limit}
		}
		d.States[i] = state{Window: c.Window, Used: c.Window.Limit, Over: true,
			ResetIn: time.Duration(until-nowMS) * time.Millisecond}
		return d, true
	}
	return decision{}, false
}

// failureMode decides a request the store could not: allowed if the tenant's plan fails open.
func (l *Limiter) failureMode(q *query) decision {
	d := decision{Outcome: fromFailureMode, Admitted: q.Plan.FailOpen}
	if d.Admitted {
		l.metrics.failOpen.Inc()
		l.metrics.okFailOpen.Inc()
	} else {
		l.metrics.failClosed.Inc()
		l.metrics.overFailClosed.Inc()
	}
	return d
}
