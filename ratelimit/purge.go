package ratelimit

import (
	"context"
	"log/slog"
	"time"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// purgeQueueSize bounds the deletions waiting to be purged. A deletion that does not fit is logged;
// its counters still expire within their window plus one sub-window.
const purgeQueueSize = 4096

// TenantsChanged is a snapshot listener (snapshot.Store.Subscribe): it queues the purge of every
// tenant whose status became deleted; Run purges them. It never blocks. The first call (the initial
// load) is skipped: tenants deleted before start-up have no live counters past their TTL to chase
// across a full key scan each.
func (l *Limiter) TenantsChanged(_ *snapshot.Snapshot, changed []tenant.Tenant) {
	if l.sawInitialLoad.CompareAndSwap(false, true) {
		return
	}
	for i := range changed {
		if changed[i].Status != tenant.Deleted {
			continue
		}
		select {
		case l.purgeQueue <- changed[i].ID:
		default:
			l.log.Warn("rate-limit purge queue full; counters will expire on their own",
				slog.String("tenant", changed[i].ID))
		}
	}
}

// purgeQueued purges one deleted tenant, retrying a few times when the store fails.
func (l *Limiter) purgeQueued(ctx context.Context, id string) {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.PurgeTenant(pctx, id)
		cancel()
		if err == nil || ctx.Err() != nil {
			return
		}
		if attempt == 5 {
			l.log.Error("rate-limit counters of a deleted tenant not purged; they expire on their own",
				slog.String("tenant", id), slog.Any("error", err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}
