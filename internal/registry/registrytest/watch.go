package registrytest

import (
	"context"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// receiveTimeout bounds how long a test waits for one change; generous, the machine may be busy.
const receiveTimeout = 10 * time.Second

// Receive waits for the next change on ch, failing the test if none comes in time or ch closes.
func Receive(t testing.TB, ch <-chan registry.Change) registry.Change {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatal("the change feed closed")
		}
		return c
	case <-time.After(receiveTimeout):
		t.Fatalf("no change within %v", receiveTimeout)
	}
	return registry.Change{}
}

// AssertQuiet fails the test if ch delivers a change within d.
func AssertQuiet(t testing.TB, ch <-chan registry.Change, d time.Duration) {
	t.Helper()
	select {
	case c, ok := <-ch:
		if ok {
			t.Fatalf("unexpected change: %s at revision %d", c.Tenant.Slug, c.Revision)
		}
		t.Fatal("the change feed closed")
	case <-time.After(d):
	}
}

// ExpectChanges receives len(want) changes and checks each is the latest state of the wanted tenant
// at the wanted revision, in that order.
func ExpectChanges(t testing.TB, ch <-chan registry.Change, want ...tenant.Tenant) {
	t.Helper()
	for i, w := range want {
		got := Receive(t, ch)
		if got.Revision != w.Revision || got.Tenant.Revision != w.Revision || got.Tenant.ID != w.ID {
			t.Fatalf("change %d: %s at revision %d (tenant revision %d), want %s at revision %d",
				i, got.Tenant.Slug, got.Revision, got.Tenant.Revision, w.Slug, w.Revision)
		}
		assertSame(t, "changed tenant", got.Tenant, w)
	}
}

func testAll(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	all, rev, err := r.All(ctx)
	if err != nil || len(all) != 0 || rev != 0 {
		t.Fatalf("All on an empty registry = %d tenants at revision %d, %v; want none at 0", len(all), rev, err)
	}
	a := mustCreate(t, r, newTenant("all-a"))
	b := mustCreate(t, r, newTenant("all-b"))
	a.Status = tenant.Provisioning
	a = mustUpdate(t, r, a)
	if a.Revision <= b.Revision {
		t.Fatalf("revisions do not increase with every write: %d then %d", b.Revision, a.Revision)
	}
	all, rev, err = r.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev != a.Revision {
		t.Errorf("All revision %d, want the last write's %d", rev, a.Revision)
	}
	if len(all) != 2 {
		t.Fatalf("All returned %d tenants, want 2", len(all))
	}
	for _, got := range all {
		assertSame(t, "tenant from All", got, mustGet(t, r, got.ID))
	}
}

// watch starts a watch that ends with the test.
func watch(t *testing.T, r registry.Registry, after int64) <-chan registry.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := r.Watch(ctx, after)
	if err != nil {
		cancel()
		t.Fatalf("Watch(%d): %v", after, err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch { // wait for the feed to close, so nothing outlives the test
		}
	})
	return ch
}

func testWatchOrder(t *testing.T, r registry.Registry) {
	a := mustCreate(t, r, newTenant("watch-a"))
	b := mustCreate(t, r, newTenant("watch-b"))
	a.Status = tenant.Provisioning
	a = mustUpdate(t, r, a)

	ch := watch(t, r, 0)
	// What happened before the watch: every tenant's latest state, in revision order.
	ExpectChanges(t, ch, b, a)

	// What happens during it: every change, in revision order.
	b.Status = tenant.Failed
	b = mustUpdate(t, r, b)
	c := mustCreate(t, r, newTenant("watch-c"))
	a.Status = tenant.Active
	a = mustUpdate(t, r, a)
	ExpectChanges(t, ch, b, c, a)
	AssertQuiet(t, ch, 100*time.Millisecond)
}

func testWatchFromRevision(t *testing.T, r registry.Registry) {
	mustCreate(t, r, newTenant("from-a"))
	b := mustCreate(t, r, newTenant("from-b"))
	c := mustCreate(t, r, newTenant("from-c"))

	ExpectChanges(t, watch(t, r, b.Revision), c)

	_, current, err := r.All(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	live := watch(t, r, current)
	AssertQuiet(t, live, 200*time.Millisecond)
	d := mustCreate(t, r, newTenant("from-d"))
	ExpectChanges(t, live, d)
}

func testWatchCloses(t *testing.T, r registry.Registry) {
	mustCreate(t, r, newTenant("closing"))
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := r.Watch(ctx, 0)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	Receive(t, ch)
	cancel()
	deadline := time.After(receiveTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatalf("the change feed did not close within %v of its context ending", receiveTimeout)
		}
	}
}
