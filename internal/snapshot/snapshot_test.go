package snapshot_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var quiet = snapshot.WithLogger(slog.New(slog.DiscardHandler))

func newTenant(slug string, status tenant.Status) tenant.Tenant {
	return tenant.Tenant{ID: tenant.NewID(), Slug: slug, Name: slug, Plan: "free", Model: tenant.Pool, Status: status}
}

// run runs store until the test ends and waits for its first load.
func run(t *testing.T, store *snapshot.Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-store.Ready():
	case err := <-done:
		t.Fatalf("Run returned before the first load: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the first load did not complete")
	}
}

// eventually polls cond until it holds or the test times out.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStore_FollowsTheRegistry(t *testing.T) {
	tests := []struct {
		name string
		new  func(t *testing.T) registry.Registry
	}{
		{"memory", func(*testing.T) registry.Registry { return registry.NewMemory() }},
		{"postgres", func(t *testing.T) registry.Registry {
			url := testenv.Database(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := registry.Migrate(ctx, url, nil); err != nil {
				t.Fatal(err)
			}
			pg, err := registry.OpenPostgres(ctx, url, registry.WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pg.Close)
			return pg
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			reg := tt.new(t)
			acme, err := reg.Create(ctx, newTenant("acme", tenant.Active))
			if err != nil {
				t.Fatal(err)
			}
			store := snapshot.NewStore(reg, quiet)
			run(t, store)

			first := store.Load()
			if got, ok := first.ByID(acme.ID); !ok || got.Slug != "acme" {
				t.Fatalf("ByID after the first load = %v, %v", got, ok)
			}
			if got, ok := first.BySlug("acme"); !ok || got.ID != acme.ID {
				t.Fatalf("BySlug after the first load = %v, %v", got, ok)
			}
			if first.Revision() != acme.Revision || first.Len() != 1 {
				t.Fatalf("first snapshot at revision %d with %d tenants, want %d with 1", first.Revision(), first.Len(), acme.Revision)
			}

			acme.Status = tenant.Suspended
			if acme, err = reg.Update(ctx, acme); err != nil {
				t.Fatal(err)
			}
			globex, err := reg.Create(ctx, newTenant("globex", tenant.Pending))
			if err != nil {
				t.Fatal(err)
			}
			eventually(t, "the snapshot reaches the registry's revision", func() bool {
				return store.Load().Revision() == globex.Revision
			})
			now := store.Load()
			if got, _ := now.ByID(acme.ID); got.Status != tenant.Suspended {
				t.Errorf("acme is %q in the new snapshot, want suspended", got.Status)
			}
			if got, ok := now.BySlug("globex"); !ok || got.ID != globex.ID {
				t.Errorf("globex by slug = %v, %v", got, ok)
			}
			// A snapshot is immutable: the one read before the changes still says what it said.
			if got, _ := first.ByID(acme.ID); got.Status != tenant.Active {
				t.Errorf("the first snapshot changed: acme is %q, want active", got.Status)
			}
			if _, ok := first.BySlug("globex"); ok || first.Len() != 1 {
				t.Error("the first snapshot gained a tenant")
			}
		})
	}
}

func TestStore_TellsListenersWhatChanged(t *testing.T) {
	ctx := context.Background()
	reg := registry.NewMemory()
	seeded, err := reg.Create(ctx, newTenant("seeded", tenant.Active))
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		calls [][]string // slugs per call
	)
	store := snapshot.NewStore(reg, quiet)
	store.Subscribe(func(next *snapshot.Snapshot, changed []tenant.Tenant) {
		slugs := make([]string, len(changed))
		for i, c := range changed {
			if got, ok := next.ByID(c.ID); !ok || got.Revision != c.Revision {
				t.Errorf("listener: the snapshot it was given lacks the change to %s", c.Slug)
			}
			slugs[i] = c.Slug
		}
		mu.Lock()
		calls = append(calls, slugs)
		mu.Unlock()
	})
	run(t, store)
	if _, err := reg.Create(ctx, newTenant("later", tenant.Pending)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the listener hears of the new tenant", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(calls[0]) != 1 || calls[0][0] != seeded.Slug {
		t.Errorf("first call (the full load) told of %v, want [seeded]", calls[0])
	}
	if len(calls[1]) != 1 || calls[1][0] != "later" {
		t.Errorf("second call told of %v, want [later]", calls[1])
	}
}

// flakySource fails its first loads, as a registry that is not up yet would.
type flakySource struct {
	registry.Registry
	mu       sync.Mutex
	failures int
}

func (f *flakySource) All(ctx context.Context) ([]tenant.Tenant, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures > 0 {
		f.failures--
		return nil, 0, errors.New("registry not reachable yet")
	}
	return f.Registry.All(ctx)
}

func TestStore_RetriesTheFirstLoad(t *testing.T) {
	reg := registry.NewMemory()
	if _, err := reg.Create(context.Background(), newTenant("patient", tenant.Active)); err != nil {
		t.Fatal(err)
	}
	src := &flakySource{Registry: reg, failures: 2}
	store := snapshot.NewStore(src, quiet)
	if store.IsReady() {
		t.Fatal("ready before Run")
	}
	run(t, store)
	if _, ok := store.Load().BySlug("patient"); !ok {
		t.Fatal("the tenant is missing after the retried load")
	}
}

func TestStore_RunReturnsWhenItsContextEndsBeforeTheFirstLoad(t *testing.T) {
	src := &flakySource{Registry: registry.NewMemory(), failures: 1 << 30}
	store := snapshot.NewStore(src, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v, want nil on a cancelled context", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if store.IsReady() {
		t.Fatal("ready without a load")
	}
	if store.Load().Len() != 0 {
		t.Fatal("the empty snapshot holds tenants")
	}
}
