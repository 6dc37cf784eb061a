package registry

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Memory is the embedded registry: everything in process memory, optionally seeded from a YAML file.
// It keeps tombstones like the Postgres registry, so ids and slugs are never reused.
type Memory struct {
	mu       sync.Mutex
	byID     map[string]*tenant.Tenant
	bySlug   map[string]string
	revision int64
	changed  chan struct{} // closed and replaced on every change: a broadcast to watchers
	now      func() time.Time
}

// NewMemory returns an empty in-memory registry.
func NewMemory() *Memory {
	return &Memory{
		byID:    make(map[string]*tenant.Tenant),
		bySlug:  make(map[string]string),
		changed: make(chan struct{}),
		now:     time.Now,
	}
}

// SeedFile is the YAML tenants file that seeds the in-memory registry.
type SeedFile struct {
	Tenants []SeedTenant `yaml:"tenants"`
}

// SeedTenant is one tenant in a seed file.
type SeedTenant struct {
	ID        string           `yaml:"id"`
	Slug      string           `yaml:"slug"`
	Name      string           `yaml:"name"`
	Plan      string           `yaml:"plan"`
	Model     tenant.Model     `yaml:"model"`
	Status    tenant.Status    `yaml:"status"`
	Upstream  tenant.Upstream  `yaml:"upstream"`
	Resources tenant.Resources `yaml:"resources"`
}

// LoadSeedFile reads and validates a tenants file. knownPlan reports whether a plan is configured.
func LoadSeedFile(path string, knownPlan func(string) bool) ([]tenant.Tenant, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read tenants file: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var seed SeedFile
	if err := dec.Decode(&seed); err != nil {
		return nil, fmt.Errorf("tenants file %s: %w", path, err)
	}
	out := make([]tenant.Tenant, 0, len(seed.Tenants))
	for i, s := range seed.Tenants {
		t := tenant.Tenant{
			ID: s.ID, Slug: s.Slug, Name: s.Name, Plan: s.Plan, Model: s.Model, Status: s.Status,
			Upstream: s.Upstream, Resources: s.Resources,
		}
		if t.ID == "" {
			t.ID = tenant.NewID()
		}
		if t.Status == "" {
			t.Status = tenant.Active
		}
		if err := t.Validate(); err != nil {
			return nil, fmt.Errorf("tenants file %s: tenants[%d]: %w", path, i, err)
		}
		if err := tenant.CheckPlan(t.Plan, knownPlan); err != nil {
			return nil, fmt.Errorf("tenants file %s: tenants[%d]: %w", path, i, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// Get implements Registry.
func (m *Memory) Get(_ context.Context, id string) (tenant.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.byID[id]
	if !ok {
		return tenant.Tenant{}, ErrNotFound
	}
	return clone(t), nil
}

// GetBySlug implements Registry.
func (m *Memory) GetBySlug(ctx context.Context, slug string) (tenant.Tenant, error) {
	m.mu.Lock()
	id, ok := m.bySlug[slug]
	m.mu.Unlock()
	if !ok {
		return tenant.Tenant{}, ErrNotFound
	}
	return m.Get(ctx, id)
}

// List implements Registry.
func (m *Memory) List(_ context.Context, q ListQuery) (Page, error) {
	q = q.Normalize()
	m.mu.Lock()
	ids := make([]string, 0, len(m.byID))
	for id, t := range m.byID {
		if id > q.After && q.Matches(t) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	var p Page
	for _, id := range ids {
		if len(p.Tenants) == q.Limit {
			p.Next = p.Tenants[len(p.Tenants)-1].ID
			break
		}
		p.Tenants = append(p.Tenants, clone(m.byID[id]))
	}
	m.mu.Unlock()
	return p, nil
}

// Create implements Registry.
func (m *Memory) Create(_ context.Context, t tenant.Tenant) (tenant.Tenant, error) {
	if t.Status == "" {
		t.Status = tenant.Pending
	}
	if err := t.Validate(); err != nil {
		return tenant.Tenant{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[t.ID]; ok {
		return tenant.Tenant{}, fmt.Errorf("%w: id %s", ErrExists, t.ID)
	}
	if _, ok := m.bySlug[t.Slug]; ok {
		return tenant.Tenant{}, fmt.Errorf("%w: slug %s", ErrExists, t.Slug)
	}
	now := m.now().UTC()
	t.CreatedAt, t.UpdatedAt = now, now
	m.store(&t)
	return clone(&t), nil
}

// Update implements Registry.
func (m *Memory) Update(_ context.Context, t tenant.Tenant) (tenant.Tenant, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	stored, ok := m.byID[t.ID]
	if !ok {
		return tenant.Tenant{}, ErrNotFound
	}
	if stored.Revision != t.Revision {
		return tenant.Tenant{}, ErrConflict
	}
	if err := checkUpdate(stored, &t); err != nil {
		return tenant.Tenant{}, err
	}
	t.CreatedAt = stored.CreatedAt
	t.UpdatedAt = m.now().UTC()
	m.store(&t)
	return clone(&t), nil
}

// store saves t under a new revision and wakes the watchers. m.mu is held.
func (m *Memory) store(t *tenant.Tenant) {
	m.revision++
	t.Revision = m.revision
	t.Upstream.Endpoints = append([]tenant.Endpoint(nil), t.Upstream.Endpoints...)
	m.byID[t.ID] = t
	m.bySlug[t.Slug] = t.ID
	close(m.changed)
	m.changed = make(chan struct{})
}

// clone copies a stored tenant for a caller, so callers never share memory with the registry.
func clone(t *tenant.Tenant) tenant.Tenant {
	c := *t
	c.Upstream.Endpoints = append([]tenant.Endpoint(nil), t.Upstream.Endpoints...)
	return c
}

// All implements Registry.
func (m *Memory) All(context.Context) ([]tenant.Tenant, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tenant.Tenant, 0, len(m.byID))
	for _, t := range m.byID {
		out = append(out, clone(t))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, m.revision, nil
}

// Watch implements Registry.
func (m *Memory) Watch(ctx context.Context, after int64) (<-chan Change, error) {
	out := make(chan Change, 64)
	go func() {
		defer close(out)
		for {
			m.mu.Lock()
			changes := m.changedSince(after)
			wake := m.changed
			m.mu.Unlock()
			for _, c := range changes {
				select {
				case out <- c:
					after = c.Revision
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// changedSince lists the tenants whose revision is above after, in revision order. m.mu is held.
func (m *Memory) changedSince(after int64) []Change {
	var out []Change
	if after >= m.revision {
		return nil
	}
	for _, t := range m.byID {
		if t.Revision > after {
			out = append(out, Change{Tenant: clone(t), Revision: t.Revision})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out
}

// Ping implements Registry; memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }
