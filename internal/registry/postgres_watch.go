package registry

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// watchBatch bounds how many changes a watcher reads per query, so a watcher starting far behind
// holds a bounded number of tenants in memory.
const watchBatch = 1000

// watchQueryTimeout bounds one read of changes.
const watchQueryTimeout = 30 * time.Second

// Watch implements Registry. Each call holds one dedicated connection (not from the pool, and named
// WatchApplicationName) that LISTENs for the NOTIFY of every write. On a notification, and every poll
// interval in case one was lost, it reads the tenants with a revision above the last it sent, in
// revision order. When the connection drops it reconnects with backoff and resumes from the last
// revision it sent, so no change is missed. The channel closes when ctx ends or the registry closes.
func (p *Postgres) Watch(ctx context.Context, after int64) (<-chan Change, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(p.stop, cancel)
	out := make(chan Change, 64)
	w := &watcher{p: p, last: after, out: out, log: p.opts.log.With(slog.String("component", "registry-watch"))}
	p.watchers.Add(1)
	go func() {
		defer p.watchers.Done()
		defer close(out)
		defer cancel()
		defer stopOnClose()
		w.run(ctx)
	}()
	return out, nil
}

// watcher is one Watch call's loop.
type watcher struct {
	p    *Postgres
	last int64 // the revision of the last change sent
	out  chan<- Change
	log  *slog.Logger
}

// run keeps a session going until ctx ends, reconnecting with backoff.
func (w *watcher) run(ctx context.Context) {
	backoff := w.p.opts.minBackoff
	for {
		synced, err := w.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if synced {
			// The connection worked for a while: the next failure starts a fresh backoff.
			backoff = w.p.opts.minBackoff
		}
		w.p.metrics.watchReconnects.Inc()
		w.log.Warn("registry watch lost its connection; reconnecting",
			slog.Any("error", err), slog.Duration("backoff", backoff), slog.Int64("revision", w.last))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, w.p.opts.maxBackoff)
	}
}

// session connects, LISTENs, then catches up and waits for notifications until the connection fails or
// ctx ends. LISTEN comes before the first catch-up, so a write that commits in between is either read
// by the catch-up or announced by a notification. synced reports whether one catch-up completed.
func (w *watcher) session(ctx context.Context) (synced bool, err error) {
	cfg := w.p.pool.Config().ConnConfig.Copy()
	cfg.RuntimeParams["application_name"] = WatchApplicationName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	for {
		if err := w.catchUp(ctx, conn); err != nil {
			return synced, err
		}
		synced = true
		if err := w.wait(ctx, conn); err != nil {
			return synced, err
		}
	}
}

// wait returns when a notification announces a revision not yet sent, or when the poll interval has
// passed, or with an error when the connection fails or ctx ends.
func (w *watcher) wait(ctx context.Context, conn *pgx.Conn) error {
	pollCtx, cancel := context.WithTimeout(ctx, w.p.opts.pollInterval)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(pollCtx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		case pollCtx.Err() != nil:
			return nil // the safety poll: a timeout leaves the connection usable
		default:
			return fmt.Errorf("wait for notification: %w", err)
		}
		// Notifications queue up while we catch up; the ones we already covered need no query.
		if rev, err := strconv.ParseInt(n.Payload, 10, 64); err != nil || rev > w.last {
			return nil
		}
	}
}

// catchUp sends every change above w.last, in revision order, in batches.
func (w *watcher) catchUp(ctx context.Context, conn *pgx.Conn) error {
	for {
		tenants, err := w.readChanges(ctx, conn)
		if err != nil {
			return fmt.Errorf("read changes: %w", err)
		}
		for _, t := range tenants {
			select {
			case w.out <- Change{Tenant: t, Revision: t.Revision}:
				w.last = t.Revision
				w.p.metrics.watchChanges.Inc()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if len(tenants) < watchBatch {
			return nil
		}
	}
}

// readChanges reads the next batch of changes above w.last. The timeout turns a connection that died
// without a word (no RST, so no error until TCP gives up) into an error and a reconnect.
func (w *watcher) readChanges(ctx context.Context, conn *pgx.Conn) ([]tenant.Tenant, error) {
	ctx, cancel := context.WithTimeout(ctx, watchQueryTimeout)
	defer cancel()
	rows, err := conn.Query(ctx, `SELECT `+tenantColumns+` FROM tenantgate.tenants
		WHERE revision > $1 ORDER BY revision LIMIT $2`, w.last, watchBatch)
	if err != nil {
		return nil, err
	}
	return collectTenants(rows, watchBatch)
}
