package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync/atomic"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Snapshot is an immutable view of every tenant at one registry revision. Never modify what it returns.
type Snapshot struct {
	byID     map[string]*tenant.Tenant
	bySlug   map[string]*tenant.Tenant
	revision int64
	loadedAt time.Time
}

// empty is the snapshot before the first load.
var empty = &Snapshot{byID: map[string]*tenant.Tenant{}, bySlug: map[string]*tenant.Tenant{}}

// New builds a snapshot of the given tenants at a revision.
func New(tenants []tenant.Tenant, revision int64) *Snapshot {
	s := &Snapshot{
		byID:     make(map[string]*tenant.Tenant, len(tenants)),
		bySlug:   make(map[string]*tenant.Tenant, len(tenants)),
		revision: revision,
		loadedAt: time.Now(),
	}
	for i := range tenants {
		s.put(&tenants[i])
	}
	return s
}

func (s *Snapshot) put(t *tenant.Tenant) {
	if old, ok := s.byID[t.ID]; ok && old.Slug != t.Slug {
		delete(s.bySlug, old.Slug)
	}
	s.byID[t.ID] = t
	s.bySlug[t.Slug] = t
}

// ByID returns the tenant with the given id (any status).
func (s *Snapshot) ByID(id string) (*tenant.Tenant, bool) {
	t, ok := s.byID[id]
	return t, ok
}

// BySlug returns the tenant holding the slug (any status).
func (s *Snapshot) BySlug(slug string) (*tenant.Tenant, bool) {
	t, ok := s.bySlug[slug]
	return t, ok
}

// Len is the number of tenants, deleted ones included.
func (s *Snapshot) Len() int { return len(s.byID) }

// Revision is the registry revision the snapshot is consistent with.
func (s *Snapshot) Revision() int64 { return s.revision }

// All calls fn for every tenant, in no particular order, until fn returns false.
func (s *Snapshot) All(fn func(*tenant.Tenant) bool) {
	for _, t := range s.byID {
		if !fn(t) {
			return
		}
	}
}

// with returns a new snapshot: s with the changes applied. s itself is not modified.
func (s *Snapshot) with(changes []registry.Change) *Snapshot {
	next := &Snapshot{
		byID:     maps.Clone(s.byID),
		bySlug:   maps.Clone(s.bySlug),
		revision: s.revision,
		loadedAt: time.Now(),
	}
	for i := range changes {
		t := changes[i].Tenant
		next.put(&t)
		if changes[i].Revision > next.revision {
			next.revision = changes[i].Revision
		}
	}
	return next
}

// Source is what the store needs from the registry.
type Source interface {
	All(ctx context.Context) ([]tenant.Tenant, int64, error)
	Watch(ctx context.Context, after int64) (<-chan registry.Change, error)
}

// Listener is told, after each swap, which tenants changed. It runs on the store's goroutine and
// must not block.
type Listener func(next *Snapshot, changed []tenant.Tenant)

// Store keeps the current snapshot, fed by the registry.
type Store struct {
	src       Source
	log       *slog.Logger
	listeners []Listener
	cur       atomic.Pointer[Snapshot]
	ready     chan struct{}
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// NewStore returns a store that Run fills from src.
func NewStore(src Source, opts ...Option) *Store {
	s := &Store{src: src, log: slog.Default(), ready: make(chan struct{})}
	for _, o := range opts {
		o(s)
	}
	s.cur.Store(empty)
	return s
}

// Subscribe adds a listener told of every change. Call it before Run.
func (s *Store) Subscribe(l Listener) { s.listeners = append(s.listeners, l) }

// Load returns the current snapshot without locking.
func (s *Store) Load() *Snapshot { return s.cur.Load() }

// Ready is closed once the first full load is in place.
func (s *Store) Ready() <-chan struct{} { return s.ready }

// IsReady reports whether the first full load is in place.
func (s *Store) IsReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// Run loads every tenant, then applies the change feed until ctx ends. The first load is retried with
// backoff until it succeeds or ctx ends.
func (s *Store) Run(ctx context.Context) error {
	if err := s.initialLoad(ctx); err != nil {
		return err
	}
	changes, err := s.src.Watch(ctx, s.Load().revision)
	if err != nil {
		return fmt.Errorf("watch tenant registry: %w", err)
	}
	for {
		batch, ok := drain(ctx, changes)
		if !ok {
			return nil
		}
		s.apply(batch)
	}
}

func (s *Store) initialLoad(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		tenants, rev, err := s.src.All(ctx)
		if err == nil {
			snap := New(tenants, rev)
			s.cur.Store(snap)
			close(s.ready)
			s.log.Info("tenant snapshot loaded", slog.Int("tenants", snap.Len()), slog.Int64("revision", rev))
			for _, l := range s.listeners {
				l(snap, tenants)
			}
			return nil
		}
		if errors.Is(err, context.Canceled) || ctx.Err() != nil {
			return nil
		}
		s.log.Warn("tenant snapshot load failed; retrying", slog.Any("error", err), slog.Duration("backoff", backoff))
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// drain waits for one change, then takes every change already waiting, so a burst costs one swap.
func drain(ctx context.Context, changes <-chan registry.Change) ([]registry.Change, bool) {
	var batch []registry.Change
	select {
	case c, ok := <-changes:
		if !ok {
			return nil, false
		}
		batch = append(batch, c)
	case <-ctx.Done():
		return nil, false
	}
	for len(batch) < 10000 {
		select {
		case c, ok := <-changes:
			if !ok {
				return batch, true
			}
			batch = append(batch, c)
		default:
			return batch, true
		}
	}
	return batch, true
}

func (s *Store) apply(batch []registry.Change) {
	next := s.Load().with(batch)
	s.cur.Store(next)
	changed := make([]tenant.Tenant, len(batch))
	for i := range batch {
		changed[i] = batch[i].Tenant
	}
	for _, l := range s.listeners {
		l(next, changed)
	}
}
