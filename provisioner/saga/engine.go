package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// Options configure an Engine. Zero values take the defaults of Validate.
type Options struct {
	Workers      int           // sagas run at once by this replica
	PollInterval time.Duration // how often an idle worker looks for due sagas
	Lease        time.Duration // how long a claimed saga stays claimed without a heartbeat
	MaxAttempts  int           // attempts of a step before the saga compensates or gives up
	Backoff      time.Duration // wait before the second attempt, doubled per attempt
	MaxBackoff   time.Duration
	Hook         Hook // optional
	Logger       *slog.Logger
	Metrics      prometheus.Registerer // optional
	Tracer       trace.TracerProvider  // optional: every step action becomes a span (TracedCatalog)
}

// Validate fills defaults and checks the options.
func (o *Options) Validate() error {
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.PollInterval == 0 {
		o.PollInterval = 500 * time.Millisecond
	}
	if o.Lease == 0 {
		o.Lease = 30 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff == 0 {
		o.Backoff = time.Second
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.Workers < 1:
		return errors.New("saga: workers must be at least 1")
	case o.Lease < 100*time.Millisecond:
		return errors.New("saga: lease must be at least 100ms")
	case o.MaxAttempts < 1:
		return errors.New("saga: max attempts must be at least 1")
	case o.MaxBackoff < o.Backoff:
		return errors.New("saga: max backoff must be at least backoff")
	}
	return nil
}

// Engine runs the sagas stored in one Postgres database. Any number of engines, in any number of
// processes, may share the database: each saga is run by one of them at a time.
type Engine struct {
	db   *pgxpool.Pool
	cat  Catalog
	o    Options
	wake chan struct{}
	m    metrics
}

// New returns an engine over db (which must hold the schema Migrate creates).
func New(db *pgxpool.Pool, cat Catalog, o Options) (*Engine, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Tracer != nil {
		cat = TracedCatalog(cat, o.Tracer)
	}
	e := &Engine{db: db, cat: cat, o: o, wake: make(chan struct{}, 1), m: newMetrics()}
	if o.Metrics != nil {
		if err := e.m.register(o.Metrics); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Start stores a new saga of kind k for spec through db (a transaction of the caller's, so that the
// saga exists exactly when the caller's other writes do) and returns its id. ErrInFlight when the
// tenant has a saga in flight already. A saga started with hold > 0 waits that long before a worker
// may take it, unless Release comes first: the caller finishes its own writes in between, and if it
// dies, the saga still runs. Call Wake after the transaction commits.
func (e *Engine) Start(ctx context.Context, db Execer, k Kind, spec Spec, hold time.Duration) (string, error) {
	plan, err := e.cat.Plan(k, spec)
	if err != nil {
		return "", err
	}
	for _, name := range plan.Steps {
		if _, ok := e.cat.Step(name); !ok {
			return "", fmt.Errorf("saga: plan names unknown step %q", name)
		}
	}
	return insert(ctx, db, k, spec, plan, hold)
}

// Release lets workers take a held saga now.
func (e *Engine) Release(ctx context.Context, id string) error {
	if _, err := e.db.Exec(ctx, `UPDATE `+Schema+`.sagas SET next_run_at = now() WHERE id = $1 AND lease_token IS NULL`, id); err != nil {
		return fmt.Errorf("release saga: %w", err)
	}
	e.Wake()
	return nil
}

// Cancel ends an in-flight saga that no worker holds now, as failed, with reason as its last error.
// ErrInFlight when a worker has it.
func (e *Engine) Cancel(ctx context.Context, id, reason string) error {
	tag, err := e.db.Exec(ctx, `UPDATE `+Schema+`.sagas SET state = 'failed', last_error = $2, updated_at = now()
		WHERE id = $1 AND state IN ('running', 'compensating') AND (lease_until IS NULL OR lease_until < now())`, id, reason)
	if err != nil {
		return fmt.Errorf("cancel saga: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return ErrInFlight
	}
	return nil
}

// Discard removes a held saga that no worker has taken, for a caller whose own writes failed.
func (e *Engine) Discard(ctx context.Context, id string) error {
	tag, err := e.db.Exec(ctx, `DELETE FROM `+Schema+`.sagas WHERE id = $1 AND lease_token IS NULL AND step = 0 AND phase = 'ready'`, id)
	if err != nil {
		return fmt.Errorf("discard saga: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("discard saga %s: a worker has it already", id)
	}
	return nil
}

// Wake tells an idle worker of this engine to look for work now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Latest returns the newest saga of the tenant; ErrNotFound when it never had one.
func (e *Engine) Latest(ctx context.Context, tenantID string) (Status, error) {
	return latest(ctx, e.db, tenantID)
}

// Run runs the workers until ctx ends. A saga in the middle of a step when ctx ends is left as a
// crash would leave it: its lease runs out and a replica resumes it.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range e.o.Workers {
		wg.Go(func() { e.work(ctx) })
	}
	wg.Wait()
	return nil
}

func (e *Engine) work(ctx context.Context) {
	idle := time.NewTimer(0)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-idle.C:
		case <-e.wake:
		}
		for ctx.Err() == nil {
			sent := time.Now()
			r, err := claim(ctx, e.db, e.o.Lease)
			if err != nil {
				if ctx.Err() == nil {
					e.o.Logger.Warn("saga claim failed", slog.Any("error", err))
				}
				break
			}
			if r == nil {
				break
			}
			e.drive(ctx, r, sent)
		}
		idle.Reset(e.o.PollInterval)
	}
}

// drive runs a claimed saga as far as it goes now: to its end, to a retry later, or until the lease
// is lost or ctx ends.
func (e *Engine) drive(ctx context.Context, r *row, claimed time.Time) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The worker acts only while it is sure to hold the lease: its context ends a third of a lease
	// before the lease could run out (counted from when the claim or renewal was sent, which is no
	// later than the database's clock started the lease), unless a heartbeat renews it first. So a
	// stalled worker stops before another replica may take the saga.
	held := time.AfterFunc(time.Until(claimed.Add(e.o.Lease*2/3)), cancel)
	defer held.Stop()
	var hb sync.WaitGroup
	defer hb.Wait()
	defer cancel()
	hb.Go(func() { e.heartbeat(ctx, cancel, held, r) })

	log := e.o.Logger.With(slog.String("saga", r.id), slog.String("tenant", r.tenantID), slog.String("kind", string(r.kind)))
	if r.phase == "started" {
		log.Info("resuming saga interrupted in a step", slog.Int("step", r.step), slog.String("state", string(r.state)))
	}
	for {
		var err error
		switch {
		case r.state == Running && r.step >= len(r.steps):
			err = e.finish(ctx, r, Done, log)
		case r.state == Compensating && r.step < 0:
			err = e.finish(ctx, r, Failed, log)
		case r.state == Running:
			err = e.forward(ctx, r, log)
		case r.state == Compensating:
			err = e.backward(ctx, r, log)
		default:
			return
		}
		if err != nil {
			if !errors.Is(err, errStop) && ctx.Err() == nil {
				log.Warn("saga stopped", slog.Any("error", err))
			}
			return
		}
		if !r.state.InFlight() {
			return
		}
	}
}

// errStop ends drive without a complaint: the saga waits for a retry, or gave up.
var errStop = errors.New("saga waits")

func (e *Engine) heartbeat(ctx context.Context, cancel context.CancelFunc, held *time.Timer, r *row) {
	t := time.NewTicker(e.o.Lease / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sent := time.Now()
		err := extend(ctx, e.db, r, e.o.Lease)
		if err == nil {
			held.Reset(time.Until(sent.Add(e.o.Lease * 2 / 3)))
			continue
		}
		if ctx.Err() == nil {
			e.o.Logger.Warn("saga lease not renewed; stopping", slog.String("saga", r.id), slog.Any("error", err))
		}
		cancel()
		return
	}
}

func (e *Engine) runOf(r *row, attempt int) *Run {
	return &Run{SagaID: r.id, Kind: r.kind, Spec: r.spec, Attempt: attempt, LastError: r.lastError, made: cloneMade(r.made)}
}

// forward runs the do of the current step, written before and after. The write after one step is
// also the write before the next, when there is one.
func (e *Engine) forward(ctx context.Context, r *row, log *slog.Logger) error {
	name := r.steps[r.step]
	step, ok := e.cat.Step(name)
	if !ok {
		return fmt.Errorf("unknown step %q", name)
	}
	attempt := r.attempt
	if !r.started {
		attempt++
		if err := write(ctx, e.db, r, change{state: Running, step: r.step, phase: "started", attempt: attempt,
			made: r.made, lastError: r.lastError, events: []eventRow{{step: name, action: DoAction, event: "started", attempt: attempt}}}); err != nil {
			return err
		}
	}
	r.started = false
	run := e.runOf(r, attempt)
	err := e.act(ctx, r, run, step, DoAction, attempt)
	if ctx.Err() != nil {
		return ctx.Err() // killed or lease lost: leave the saga as it is for whoever resumes it
	}
	if err == nil {
		done := eventRow{step: name, action: DoAction, event: "done", attempt: attempt}
		next := r.step + 1
		if next >= len(r.steps) {
			return write(ctx, e.db, r, change{state: Running, step: next, phase: "ready", made: run.made, events: []eventRow{done}})
		}
		if err := write(ctx, e.db, r, change{state: Running, step: next, phase: "started", attempt: 1, made: run.made,
			events: []eventRow{done, {step: r.steps[next], action: DoAction, event: "started", attempt: 1}}}); err != nil {
			return err
		}
		r.started = true
		return nil
	}
	msg := fmt.Sprintf("%s: %v", name, err)
	log.Warn("saga step failed", slog.String("step", name), slog.Int("attempt", attempt), slog.Any("error", err))
	failed := []eventRow{{step: name, action: DoAction, event: "failed", attempt: attempt, err: msg}}
	if attempt < e.o.MaxAttempts {
		if err := write(ctx, e.db, r, change{state: Running, step: r.step, phase: "ready", attempt: attempt, made: run.made,
			lastError: msg, retryIn: e.backoff(attempt), release: true, events: failed}); err != nil {
			return err
		}
		return errStop
	}
	if r.step < r.pivot {
		log.Warn("saga compensating", slog.String("step", name))
		return write(ctx, e.db, r, change{state: Compensating, step: r.step, phase: "ready", made: run.made,
			lastError: msg, events: failed})
	}
	if gerr := e.cat.GaveUp(ctx, run, name, err); gerr != nil {
		return fmt.Errorf("give up: %w", gerr)
	}
	if err := write(ctx, e.db, r, change{state: Failed, step: r.step, phase: "ready", attempt: attempt, made: run.made,
		lastError: msg, release: true, events: failed}); err != nil {
		return err
	}
	e.m.finished.WithLabelValues(string(r.kind), string(Failed)).Inc()
	log.Error("saga gave up", slog.String("step", name), slog.Any("error", err))
	return errStop
}

// backward runs the undo of the current step. An undo is retried until it succeeds: giving up on
// compensation would leave the half-made tenant behind.
func (e *Engine) backward(ctx context.Context, r *row, log *slog.Logger) error {
	name := r.steps[r.step]
	step, ok := e.cat.Step(name)
	if !ok {
		return fmt.Errorf("unknown step %q", name)
	}
	attempt := r.attempt + 1
	if err := write(ctx, e.db, r, change{state: Compensating, step: r.step, phase: "started", attempt: attempt,
		made: r.made, lastError: r.lastError, events: []eventRow{{step: name, action: UndoAction, event: "started", attempt: attempt}}}); err != nil {
		return err
	}
	run := e.runOf(r, attempt)
	err := e.act(ctx, r, run, step, UndoAction, attempt)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err == nil {
		run.Forget(name)
		return write(ctx, e.db, r, change{state: Compensating, step: r.step - 1, phase: "ready", made: run.made,
			lastError: r.lastError, events: []eventRow{{step: name, action: UndoAction, event: "done", attempt: attempt}}})
	}
	log.Warn("saga undo failed; will retry", slog.String("step", name), slog.Int("attempt", attempt), slog.Any("error", err))
	if err := write(ctx, e.db, r, change{state: Compensating, step: r.step, phase: "ready", attempt: attempt, made: run.made,
		lastError: r.lastError, retryIn: e.backoff(attempt), release: true,
		events: []eventRow{{step: name, action: UndoAction, event: "failed", attempt: attempt, err: fmt.Sprintf("%s: %v", name, err)}}}); err != nil {
		return err
	}
	return errStop
}

// act runs one step action between the hook's before and after.
func (e *Engine) act(ctx context.Context, r *row, run *Run, step Step, a Action, attempt int) error {
	ev := Event{SagaID: r.id, TenantID: r.tenantID, Kind: r.kind, Step: step.Name(), Action: a, Phase: Before, Attempt: attempt}
	start := time.Now()
	err := e.hook(ctx, ev)
	if err == nil {
		if a == DoAction {
			err = step.Do(ctx, run)
		} else {
			err = step.Undo(ctx, run)
		}
	}
	if err == nil {
		ev.Phase = After
		err = e.hook(ctx, ev)
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	e.m.steps.WithLabelValues(step.Name(), string(a), result).Observe(time.Since(start).Seconds())
	return err
}

func (e *Engine) hook(ctx context.Context, ev Event) error {
	if e.o.Hook == nil {
		return nil
	}
	return e.o.Hook(ctx, ev)
}

func (e *Engine) finish(ctx context.Context, r *row, s State, log *slog.Logger) error {
	if err := write(ctx, e.db, r, change{state: s, step: r.step, phase: "ready", made: r.made, lastError: r.lastError, release: true}); err != nil {
		return err
	}
	e.m.finished.WithLabelValues(string(r.kind), string(s)).Inc()
	log.Info("saga finished", slog.String("state", string(s)))
	return nil
}

// backoff is the wait after the attempt-th failure: doubling from Backoff, capped at MaxBackoff,
// with jitter so that replicas retrying the same outage spread out.
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.o.Backoff
	for i := 1; i < attempt && d < e.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, e.o.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

func cloneMade[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
