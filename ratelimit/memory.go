package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// MemoryStore keeps the counters in this process: the embedded default when no Redis is configured.
// Decisions are serialised per tenant by a lock, so they are atomic and in time order, as in Redis.
// Memory is bounded: a counter expires W+g after its last admission and expired counters are swept as
// the store grows.
type MemoryStore struct {
	now    func() int64
	seed   maphash.Seed
	shards [64]memoryShard
}

type memoryShard struct {
	mu        sync.Mutex
	tenants   map[string]map[string]*memoryCounter
	size      int // counters in the shard
	nextSweep int
}

// memoryCounter is one key: its non-empty sub-windows in ascending order, at most ceil(W/g)+1.
type memoryCounter struct {
	buckets   []bucketCount
	expiresAt int64
}

type bucketCount struct{ b, n int64 }

// minSweep is the fewest counters a shard holds before it sweeps expired ones.
const minSweep = 128

// MemoryOption configures a MemoryStore.
type MemoryOption func(*MemoryStore)

// WithMemoryClock sets the clock (Unix milliseconds; it must not go backwards). Tests use it.
func WithMemoryClock(now func() int64) MemoryOption { return func(m *MemoryStore) { m.now = now } }

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	base := time.Now()
	baseMS := base.UnixMilli()
	m := &MemoryStore{
		// Wall-clock aligned but monotonic: a wall-clock step never reorders decisions.
		now:  func() int64 { return baseMS + time.Since(base).Milliseconds() },
		seed: maphash.MakeSeed(),
	}
	for i := range m.shards {
		m.shards[i].tenants = map[string]map[string]*memoryCounter{}
		m.shards[i].nextSweep = minSweep
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

func (m *MemoryStore) shard(tenantID string) *memoryShard {
	return &m.shards[maphash.String(m.seed, tenantID)%uint64(len(m.shards))]
}

// applyBy implements deadlineStore: Apply, which waits for nothing that a deadline could bound.
func (m *MemoryStore) applyBy(ctx context.Context, _ time.Time, tenantID string, counters []counter) (applied, error) {
	return m.Apply(ctx, tenantID, counters)
}

// Apply implements Store. It never fails: it waits for nothing but a per-tenant lock, so a deadline
// that passed while the process was busy is no reason to fall back to the failure mode.
func (m *MemoryStore) Apply(_ context.Context, tenantID string, counters []counter) (applied, error) {
	sh := m.shard(tenantID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := m.now()
	keys := sh.tenants[tenantID]
	out := applied{NowMS: now, Admitted: true, Counts: make([]count, len(counters))}
	for i, c := range counters {
		mc := keys[c.Key]
		if mc != nil && mc.expiresAt <= now {
			mc.buckets = mc.buckets[:0]
		}
		out.Counts[i] = mc.count(c.Window, now)
		if !c.Window.admits(out.Counts[i], c.Hits) {
			out.Admitted = false
		}
	}
	if !out.Admitted {
		return out, nil
	}
	for _, c := range counters {
		if c.Hits <= 0 {
			continue
		}
		if keys == nil {
			keys = map[string]*memoryCounter{}
			sh.tenants[tenantID] = keys
		}
		mc := keys[c.Key]
		if mc == nil {
			mc = &memoryCounter{}
			keys[c.Key] = mc
			sh.size++
		}
		mc.add(c.Window.bucket(now), c.Hits)
		mc.expiresAt = now + c.Window.TTLMS()
	}
	if sh.size >= sh.nextSweep {
		sh.sweep(now)
	}
	return out, nil
}

// count drops the sub-windows the window no longer counts and sums the rest.
func (mc *memoryCounter) count(w window, now int64) count {
	c := count{Oldest: -1}
	if mc == nil {
		return c
	}
	first := w.first(now)
	drop := 0
	for drop < len(mc.buckets) && mc.buckets[drop].b < first {
		drop++
	}
	if drop > 0 {
		mc.buckets = append(mc.buckets[:0], mc.buckets[drop:]...)
	}
	for _, bc := range mc.buckets {
		c.Used += bc.n
	}
	if len(mc.buckets) > 0 {
		c.Oldest = mc.buckets[0].b
	}
	return c
}

func (mc *memoryCounter) add(b, hits int64) {
	if n := len(mc.buckets); n > 0 && mc.buckets[n-1].b == b {
		mc.buckets[n-1].n += hits
		return
	}
	mc.buckets = append(mc.buckets, bucketCount{b: b, n: hits})
}

// sweep removes expired counters; the next sweep comes when the shard has doubled since.
func (sh *memoryShard) sweep(now int64) {
	for id, keys := range sh.tenants {
		for k, mc := range keys {
			if mc.expiresAt <= now {
				delete(keys, k)
				sh.size--
			}
		}
		if len(keys) == 0 {
			delete(sh.tenants, id)
		}
	}
	sh.nextSweep = max(minSweep, 2*sh.size)
}

// Len is the number of counters held (expired ones not yet swept included).
func (m *MemoryStore) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += sh.size
		sh.mu.Unlock()
	}
	return n
}

// PurgeTenant implements Store.
func (m *MemoryStore) PurgeTenant(_ context.Context, tenantID string) error {
	sh := m.shard(tenantID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.size -= len(sh.tenants[tenantID])
	delete(sh.tenants, tenantID)
	return nil
}

// Ping implements Store; memory is always there.
func (m *MemoryStore) Ping(context.Context) error { return nil }
