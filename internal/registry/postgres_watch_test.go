package registry_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/registry/registrytest"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startWatch watches r from its current revision and returns once the watcher is live (it has
// delivered a write made after it started). The watch ends at cleanup.
func startWatch(t *testing.T, r registry.Registry, writer registry.Registry) <-chan registry.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, rev, err := r.All(testContext(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ch, err := r.Watch(ctx, rev)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		for range ch {
		}
	})
	warmup := create(t, writer, "warmup-"+tenant.NewID()[:8])
	registrytest.ExpectChanges(t, ch, warmup)
	return ch
}

func create(t *testing.T, r registry.Registry, slug string) tenant.Tenant {
	t.Helper()
	created, err := r.Create(testContext(t), tenant.Tenant{
		ID: tenant.NewID(), Slug: slug, Name: slug, Plan: "starter", Model: tenant.Pool,
	})
	if err != nil {
		t.Fatalf("create %s: %v", slug, err)
	}
	return created
}

func update(t *testing.T, r registry.Registry, tn tenant.Tenant, status tenant.Status) tenant.Tenant {
	t.Helper()
	tn.Status = status
	updated, err := r.Update(testContext(t), tn)
	if err != nil {
		t.Fatalf("update %s: %v", tn.Slug, err)
	}
	return updated
}

// The bound: an update made through one pool reaches a watcher (on its own connection, in
// another registry with another pool) within 100 ms. Each sample is timed from before the Update call,
// so it includes the write's own round trips.
func TestPostgres_UpdateThroughOnePoolReachesAWatcherWithin100ms(t *testing.T) {
	watcherSide, url := newPostgres(t)
	writerSide, err := registry.OpenPostgres(testContext(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(writerSide.Close)
	ch := startWatch(t, watcherSide, writerSide)

	tn := create(t, writerSide, "latency")
	registrytest.ExpectChanges(t, ch, tn)
	const samples = 9
	latencies := make([]time.Duration, 0, samples)
	for i := range samples {
		tn.Name = "Latency sample " + strconv.Itoa(i)
		start := time.Now()
		tn = update(t, writerSide, tn, tn.Status)
		registrytest.ExpectChanges(t, ch, tn)
		latencies = append(latencies, time.Since(start))
	}
	slices.Sort(latencies)
	t.Logf("update to watcher latency over %d samples: min %v, median %v, max %v",
		samples, latencies[0], latencies[samples/2], latencies[samples-1])
	// Typical samples take a few milliseconds, so the bound leaves a wide margin for a noisy machine.
	for _, l := range latencies {
		if l > 100*time.Millisecond {
			t.Errorf("an update took %v to reach the watcher, want under 100ms (all samples: %v)", l, latencies)
			break
		}
	}
}

// Kill the watcher's backend, write while it is down, and every write still arrives, in order.
func TestPostgres_WatchReconnectsAfterItsBackendIsKilledAndMissesNothing(t *testing.T) {
	metrics := prometheus.NewRegistry()
	// A long first backoff keeps the watcher down while the test writes; a long poll interval keeps
	// the safety poll from hiding a broken resync.
	pg, url := newPostgres(t, registry.WithRegisterer(metrics),
		registry.WithReconnectBackoff(2*time.Second, 4*time.Second), registry.WithPollInterval(time.Hour))
	existing := []tenant.Tenant{create(t, pg, "old-one"), create(t, pg, "old-two")}
	ch := startWatch(t, pg, pg)

	admin, err := pgx.Connect(testContext(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(context.Background()) })
	watchers := func() int {
		var n int
		err := admin.QueryRow(testContext(t), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND datname = current_database()`, registry.WatchApplicationName).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	var killed int
	err = admin.QueryRow(testContext(t), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, registry.WatchApplicationName).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d watcher backends (%v), want 1", killed, err)
	}

	var want []tenant.Tenant
	want = append(want, create(t, pg, "while-down-1"))
	want = append(want, update(t, pg, existing[0], tenant.Provisioning))
	want = append(want, create(t, pg, "while-down-2"))
	want = append(want, update(t, pg, existing[1], tenant.Failed))
	want = append(want, create(t, pg, "while-down-3"))
	if n := watchers(); n != 0 {
		t.Fatalf("%d watcher backends during the outage, want 0: the writes were not made while it was down", n)
	}

	registrytest.ExpectChanges(t, ch, want...)
	if n := watchers(); n != 1 {
		t.Errorf("%d watcher backends after recovery, want 1", n)
	}
	err = testutil.GatherAndCompare(metrics, strings.NewReader(`
# HELP tenantgate_registry_watch_reconnects_total Times a change-feed watcher lost its connection and reconnected.
# TYPE tenantgate_registry_watch_reconnects_total counter
tenantgate_registry_watch_reconnects_total 1
`), "tenantgate_registry_watch_reconnects_total")
	if err != nil {
		t.Error(err)
	}
	after := create(t, pg, "after-recovery")
	registrytest.ExpectChanges(t, ch, after)
}

// Many writers at once: the watcher still sees every write exactly once, in increasing revision order
// (writes commit in revision order, so "revision > last" never skips one that commits late).
func TestPostgres_WatchMissesNoneOfManyConcurrentWrites(t *testing.T) {
	pg, url := newPostgres(t)
	other, err := registry.OpenPostgres(testContext(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	ch := startWatch(t, pg, pg)

	const writers, perWriter = 8, 10
	created := make(chan tenant.Tenant, writers*perWriter)
	errs := make(chan error, writers)
	for w := range writers {
		writer := []registry.Registry{pg, other}[w%2]
		go func() {
			for i := range perWriter {
				tn, err := writer.Create(context.Background(), tenant.Tenant{
					ID: tenant.NewID(), Slug: "busy-" + strconv.Itoa(w) + "-" + strconv.Itoa(i),
					Name: "busy", Plan: "free", Model: tenant.Pool,
				})
				if err != nil {
					errs <- err
					return
				}
				created <- tn
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(created)
	want := map[string]int64{}
	for tn := range created {
		want[tn.ID] = tn.Revision
	}
	var last int64
	for range len(want) {
		c := registrytest.Receive(t, ch)
		if c.Revision <= last {
			t.Fatalf("revision %d after %d: the feed went back", c.Revision, last)
		}
		last = c.Revision
		if rev, ok := want[c.Tenant.ID]; !ok || rev != c.Revision {
			t.Fatalf("unexpected change %s at revision %d", c.Tenant.Slug, c.Revision)
		}
		delete(want, c.Tenant.ID)
	}
	registrytest.AssertQuiet(t, ch, 100*time.Millisecond)
}

// A change whose notification never came (written here without NOTIFY) is found by the safety poll.
func TestPostgres_WatchSafetyPollFindsAChangeWithoutNotification(t *testing.T) {
	pg, url := newPostgres(t, registry.WithPollInterval(200*time.Millisecond))
	ch := startWatch(t, pg, pg)
	conn, err := pgx.Connect(testContext(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	id := tenant.NewID()
	_, err = conn.Exec(testContext(t), `INSERT INTO tenantgate.tenants
		(id, slug, name, plan, model, status, revision, created_at, updated_at)
		VALUES ($1, 'silent', 'Silent', 'free', 'pool', 'active', nextval('tenantgate.revision'), now(), now())`, id)
	if err != nil {
		t.Fatal(err)
	}
	if c := registrytest.Receive(t, ch); c.Tenant.ID != id {
		t.Fatalf("got change for %s, want the silent insert %s", c.Tenant.Slug, id)
	}
}

// A watcher on an unreachable database keeps retrying without blocking its caller, and its channel
// still closes when the context ends.
func TestPostgres_WatchOnUnreachableDatabaseClosesWithItsContext(t *testing.T) {
	pg, err := registry.OpenPostgres(testContext(t), unreachableURL, registry.WithReconnectBackoff(10*time.Millisecond, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := pg.Watch(ctx, 0)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	registrytest.AssertQuiet(t, ch, 200*time.Millisecond)
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a change from an unreachable database")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the feed did not close after its context ended")
	}
}

// unreachableURL names a port nothing listens on.
const unreachableURL = "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=2"

func TestPostgres_PingFailsWhenTheDatabaseIsUnreachable(t *testing.T) {
	pg, err := registry.OpenPostgres(testContext(t), unreachableURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := pg.Ping(ctx); err == nil {
		t.Fatal("Ping of an unreachable database succeeded")
	}
}

func TestPostgres_PingSucceedsOnAReachableDatabase(t *testing.T) {
	pg, _ := newPostgres(t)
	if err := pg.Ping(testContext(t)); err != nil {
		t.Fatal(err)
	}
}

func TestPostgres_ClosedRegistryRefusesCallsAndEndsItsWatchers(t *testing.T) {
	pg, _ := newPostgres(t)
	ctx := testContext(t)
	ch, err := pg.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	pg.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("a change after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the watcher")
	}
	if err := pg.Ping(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
	if _, err := pg.Get(ctx, tenant.NewID()); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := pg.Watch(ctx, 0); !errors.Is(err, registry.ErrClosed) {
		t.Errorf("Watch after Close = %v, want ErrClosed", err)
	}
	pg.Close() // a second Close is harmless
}
