package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgx's pool health checker and LISTEN connection finish shortly after Close.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}

const waitLong = 10 * time.Second

// harness is one control plane: registry -> snapshot store -> xds server -> ADS on loopback.
type harness struct {
	srv      *Server
	addr     string
	reg      *metricsReg
	publishs atomic.Int64
}

type metricsReg struct{ *prometheus.Registry }

func testConfig() config.Config {
	cfg := config.Default()
	cfg.BaseDomain = "tenants.test"
	cfg.XDS.Debounce = config.Duration(2 * time.Millisecond)
	cfg.XDS.MaxDelay = config.Duration(20 * time.Millisecond)
	cfg.XDS.NACKBackoff = config.Duration(400 * time.Millisecond)
	cfg.XDS.NACKBackoffMax = config.Duration(800 * time.Millisecond)
	return cfg
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func startControlPlane(t testing.TB, src snapshot.Source, cfg config.Config) *harness {
	t.Helper()
	h := &harness{reg: &metricsReg{prometheus.NewRegistry()}}
	h.srv = New(envoybuild.ParamsFrom(&cfg), WithLogger(quietLogger()), WithRegisterer(h.reg),
		withPublishHook(func(int64) { h.publishs.Add(1) }))
	store := snapshot.NewStore(src, snapshot.WithLogger(quietLogger()))
	store.Subscribe(h.srv.OnChange)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return store.Run(gctx) })
	g.Go(func() error { return h.srv.Run(gctx) })
	g.Go(func() error { return h.srv.Serve(gctx, lis) })
	t.Cleanup(func() {
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	return h
}

func newTenant(slug string, status tenant.Status, eps ...tenant.Endpoint) tenant.Tenant {
	return tenant.Tenant{ID: tenant.NewID(), Slug: slug, Name: slug, Plan: "free", Model: tenant.Pool, Status: status,
		Upstream: tenant.Upstream{Endpoints: eps}}
}

func create(t testing.TB, reg registry.Registry, tn tenant.Tenant) tenant.Tenant {
	t.Helper()
	got, err := reg.Create(context.Background(), tn)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func setStatus(t testing.TB, reg registry.Registry, tn tenant.Tenant, st tenant.Status) tenant.Tenant {
	t.Helper()
	cur, err := reg.Get(context.Background(), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.Status = st
	got, err := reg.Update(context.Background(), cur)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func scopeOf(slug string) string { return envoybuild.TenantResourceName(slug) }

// clients dials n state-of-the-world and n delta clients.
func clients(t testing.TB, addr string, n int, opts ...clientOpt) []*adsClient {
	var out []*adsClient
	for i := range n {
		out = append(out, dialADS(t, addr, fmt.Sprintf("sotw-%d", i), false, opts...))
		out = append(out, dialADS(t, addr, fmt.Sprintf("delta-%d", i), true, opts...))
	}
	return out
}

func waitAll(t testing.TB, cs []*adsClient, what string, cond func(c *adsClient) bool) {
	t.Helper()
	for _, c := range cs {
		c.waitFor(t, waitLong, what, cond)
	}
}

func servable(slugs ...string) func(c *adsClient) bool {
	return func(c *adsClient) bool {
		for _, s := range slugs {
			if !c.servable(scopeOf(s)) {
				return false
			}
		}
		return c.has(resource.ListenerType, envoybuild.ListenerName)
	}
}

func gone(slug string) func(c *adsClient) bool {
	return func(c *adsClient) bool {
		return !c.has(resource.ScopedRouteType, scopeOf(slug)) && !c.has(resource.RouteType, scopeOf(slug)) &&
			!c.has(resource.ClusterType, scopeOf(slug))
	}
}

// lifecycle is the shared scenario: seeded tenants reach every client, a created tenant (with its own
// upstream) reaches every client, a suspended tenant's routes and cluster disappear while every other
// tenant's stay (the full-state rule would drop them if a response held only the changed scope).
func lifecycle(t *testing.T, reg registry.Registry) {
	create(t, reg, newTenant("seed-pool", tenant.Active))
	create(t, reg, newTenant("seed-silo", tenant.Active, tenant.Endpoint{Host: "10.0.0.1", Port: 8080}))
	create(t, reg, newTenant("seed-pending", tenant.Pending))
	h := startControlPlane(t, reg, testConfig())
	cs := clients(t, h.addr, 2)
	waitAll(t, cs, "seeded tenants", servable("seed-pool", "seed-silo"))
	waitAll(t, cs, "no routes for a pending tenant", gone("seed-pending"))

	created := create(t, reg, newTenant("fresh", tenant.Active, tenant.Endpoint{Host: "10.0.0.9", Port: 9000}))
	waitAll(t, cs, "created tenant", servable("fresh", "seed-pool", "seed-silo"))

	setStatus(t, reg, created, tenant.Suspended)
	waitAll(t, cs, "suspended tenant gone", gone("fresh"))
	waitAll(t, cs, "others kept", servable("seed-pool", "seed-silo"))
	for _, c := range cs {
		c.mu.Lock()
		if c.has(resource.EndpointType, scopeOf("fresh")) {
			t.Errorf("%s still holds the suspended tenant's endpoints", c.node)
		}
		c.mu.Unlock()
	}
}

func TestADS_TenantLifecycleReachesEveryClient_Memory(t *testing.T) {
	lifecycle(t, registry.NewMemory())
}

func TestADS_TenantLifecycleReachesEveryClient_Postgres(t *testing.T) {
	url := testenv.Database(t)
	ctx := context.Background()
	if _, err := registry.Migrate(ctx, url, quietLogger()); err != nil {
		t.Fatal(err)
	}
	pg, err := registry.OpenPostgres(ctx, url, registry.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pg.Close)
	lifecycle(t, pg)
}

func TestADS_PlanChangeReachesRoutesOnly(t *testing.T) {
	reg := registry.NewMemory()
	tn := create(t, reg, newTenant("acme", tenant.Active))
	h := startControlPlane(t, reg, testConfig())
	cs := clients(t, h.addr, 1)
	waitAll(t, cs, "tenant", servable("acme"))
	before := make([]map[string]int, len(cs))
	for i, c := range cs {
		before[i], _ = c.counts()
	}
	cur, _ := reg.Get(context.Background(), tn.ID)
	cur.Plan = "enterprise"
	if _, err := reg.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	waitAll(t, cs, "new plan in the route", func(c *adsClient) bool { return c.planOf(scopeOf("acme")) == "enterprise" })
	for i, c := range cs {
		after, _ := c.counts()
		for _, typ := range []string{resource.ClusterType, resource.ScopedRouteType, resource.ListenerType} {
			if after[typ] != before[i][typ] {
				t.Errorf("%s: a plan change re-sent %s (%d -> %d responses)", c.node, shortType(typ), before[i][typ], after[typ])
			}
		}
	}
}

// A NACK holds back only the rejecting node's next push of that type: neither go-control-plane nor
// these caches re-send a rejected version, so what the backoff changes is when a later change arrives.
func TestADS_BackoffDelaysPushesToTheRejectingNodeOnly(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			reg := registry.NewMemory()
			create(t, reg, newTenant("good", tenant.Active))
			cfg := testConfig()
			cfg.XDS.NACKBackoff = config.Duration(1500 * time.Millisecond)
			cfg.XDS.NACKBackoffMax = config.Duration(1500 * time.Millisecond)
			h := startControlPlane(t, reg, cfg)
			picky := dialADS(t, h.addr, "picky", delta, rejecting(func(typ string, res map[string]proto.Message) error {
				if _, ok := res[scopeOf("bad")]; ok && typ == resource.RouteType {
					return errors.New("route tenant-bad: invalid (test)")
				}
				return nil
			}))
			calm := dialADS(t, h.addr, "calm", delta)
			picky.waitFor(t, waitLong, "good", servable("good"))
			calm.waitFor(t, waitLong, "good", servable("good"))
			create(t, reg, newTenant("bad", tenant.Active))
			picky.waitFor(t, waitLong, "a NACK", func(c *adsClient) bool { return c.nacks > 0 })
			nackAt := time.Now()
			create(t, reg, newTenant("later", tenant.Active))
			calm.waitFor(t, waitLong, "later", servable("later"))
			if took := time.Since(nackAt); took >= time.Second {
				t.Errorf("the calm node got the change %s after the other node's NACK: the backoff held it back too", took)
			}
			picky.waitFor(t, waitLong, "later", func(c *adsClient) bool { return c.has(resource.RouteType, scopeOf("later")) })
			if took := time.Since(nackAt); took < time.Second {
				t.Errorf("the rejecting node got a route update %s after its NACK, inside its 1.5s backoff", took)
			}
			if got := testutil.ToFloat64(h.srv.metrics.nacks.WithLabelValues("RouteConfiguration")); got < 1 {
				t.Errorf("nack metric = %v, want >= 1", got)
			}
			if _, nacks := calm.counts(); nacks != 0 {
				t.Errorf("calm client NACKed %d times", nacks)
			}
		})
	}
}

func TestADS_ReconnectingClientGetsFullCurrentState(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) {
			reg := registry.NewMemory()
			a := create(t, reg, newTenant("alpha", tenant.Active))
			h := startControlPlane(t, reg, testConfig())
			first := dialADS(t, h.addr, "node-1", delta)
			first.waitFor(t, waitLong, "alpha", servable("alpha"))
			first.close()

			setStatus(t, reg, a, tenant.Suspended)
			create(t, reg, newTenant("beta", tenant.Active, tenant.Endpoint{Host: "10.2.0.1", Port: 80}))
			create(t, reg, newTenant("gamma", tenant.Active))

			again := dialADS(t, h.addr, "node-1", delta)
			again.waitFor(t, waitLong, "full current state", func(c *adsClient) bool {
				return servable("beta", "gamma")(c) && gone("alpha")(c) && c.has(resource.ClusterType, envoybuild.AuthzCluster) &&
					c.has(resource.ClusterType, envoybuild.RateLimitCluster)
			})
		})
	}
}

// flakySource is a registry whose change feed can be cut and whose loads can fail: an outage.
type flakySource struct {
	registry.Registry
	mu   sync.Mutex
	down bool
	cut  context.CancelFunc
}

func (f *flakySource) All(ctx context.Context) ([]tenant.Tenant, int64, error) {
	f.mu.Lock()
	down := f.down
	f.mu.Unlock()
	if down {
		return nil, 0, errors.New("registry unreachable (test)")
	}
	return f.Registry.All(ctx)
}

func (f *flakySource) Watch(ctx context.Context, after int64) (<-chan registry.Change, error) {
	ctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.cut = cancel
	f.mu.Unlock()
	return f.Registry.Watch(ctx, after)
}

func (f *flakySource) outage() {
	f.mu.Lock()
	f.down = true
	if f.cut != nil {
		f.cut()
	}
	f.mu.Unlock()
}

func (f *flakySource) recover() {
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
}

func TestADS_RegistryOutageKeepsTheLastConfig(t *testing.T) {
	mem := registry.NewMemory()
	create(t, mem, newTenant("alpha", tenant.Active))
	create(t, mem, newTenant("beta", tenant.Active, tenant.Endpoint{Host: "10.0.0.2", Port: 80}))
	src := &flakySource{Registry: mem}
	h := startControlPlane(t, src, testConfig())
	cs := clients(t, h.addr, 1)
	waitAll(t, cs, "tenants", servable("alpha", "beta"))

	src.outage()
	time.Sleep(200 * time.Millisecond)
	waitAll(t, cs, "config kept through the outage", servable("alpha", "beta"))
	if err := h.srv.CheckReady(context.Background()); err != nil {
		t.Errorf("xds not ready during an outage although it serves a complete config: %v", err)
	}
	late := clients(t, h.addr, 1)
	waitAll(t, late, "a client connecting during the outage gets the last config", servable("alpha", "beta"))
}

func TestADS_RestartedControlPlaneServesNothingUntilComplete(t *testing.T) {
	mem := registry.NewMemory()
	create(t, mem, newTenant("alpha", tenant.Active))
	src := &flakySource{Registry: mem}
	src.outage()
	h := startControlPlane(t, src, testConfig())
	cs := clients(t, h.addr, 1)
	time.Sleep(300 * time.Millisecond)
	for _, c := range cs {
		if got, _ := c.counts(); len(got) != 0 {
			t.Fatalf("%s got responses %v before the first complete config", c.node, got)
		}
	}
	if h.srv.CheckReady(context.Background()) == nil {
		t.Fatal("ready before any config was built")
	}
	src.recover()
	waitAll(t, cs, "complete config after the registry came back", servable("alpha"))
	if err := h.srv.CheckReady(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestRun_CoalescesABurstIntoFewPublishes(t *testing.T) {
	reg := registry.NewMemory()
	cfg := testConfig()
	cfg.XDS.Debounce = config.Duration(50 * time.Millisecond)
	cfg.XDS.MaxDelay = config.Duration(200 * time.Millisecond)
	h := startControlPlane(t, reg, cfg)
	c := dialADS(t, h.addr, "n", true)
	c.waitFor(t, waitLong, "listener", func(c *adsClient) bool { return c.has(resource.ListenerType, envoybuild.ListenerName) })
	base := h.publishs.Load()
	for i := range 20 {
		create(t, reg, newTenant(fmt.Sprintf("burst-%02d", i), tenant.Active))
	}
	c.waitFor(t, waitLong, "whole burst", func(c *adsClient) bool { return len(c.res[resource.ScopedRouteType]) == 20 })
	if n := h.publishs.Load() - base; n > 3 {
		t.Errorf("20 quick changes took %d publishes, want them coalesced", n)
	}
}

func TestADS_DeltaReconnectWithVersionsGetsOnlyWhatChanged(t *testing.T) {
	reg := registry.NewMemory()
	var ts []tenant.Tenant
	for i := range 30 {
		ts = append(ts, create(t, reg, newTenant(fmt.Sprintf("held-%02d", i), tenant.Active)))
	}
	h := startControlPlane(t, reg, testConfig())
	first := dialADS(t, h.addr, "node-1", true)
	first.waitFor(t, waitLong, "all tenants", servable("held-00", "held-29"))
	first.close()

	cur, _ := reg.Get(context.Background(), ts[0].ID)
	cur.Plan = "enterprise"
	if _, err := reg.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	create(t, reg, newTenant("joined", tenant.Active))
	time.Sleep(100 * time.Millisecond) // published before the Envoy comes back

	again := dialADS(t, h.addr, "node-1", true, resumeFrom(first))
	again.waitFor(t, waitLong, "the changes", func(c *adsClient) bool {
		return servable("joined", "held-29")(c) && c.planOf(scopeOf("held-00")) == "enterprise"
	})
	time.Sleep(100 * time.Millisecond)
	again.mu.Lock()
	defer again.mu.Unlock()
	if got := again.received[resource.RouteType]; got != 2 {
		t.Errorf("resumed client received %d route configurations, want 2 (the changed and the new one)", got)
	}
	if got := again.received[resource.ScopedRouteType]; got != 1 {
		t.Errorf("resumed client received %d scopes, want 1 (the new one)", got)
	}
	if got := again.received[resource.ClusterType] + again.received[resource.ListenerType]; got != 0 {
		t.Errorf("resumed client received %d unchanged clusters and listeners", got)
	}
}

// An Envoy that rejects a config is pushed that type again only as often as the NACK backoff allows,
// however fast the registry changes: the caches push every change at once, so without the backoff
// every change would carry the rejected resource to it again and be rejected again (a resend storm).
// Over state-of-the-world each scopes response is the complete set, so any other tenant's change
// re-sends a rejected scope; over delta a response holds only what changed, so the storm needs the
// rejected resource itself to keep changing. Through the storm the Envoy keeps its last accepted
// config; once the bad tenant is gone it converges and ACKs, which ends the backoff.
func TestADS_NACKKeepsTheLastAcceptedConfigWithoutAResendStorm(t *testing.T) {
	cases := []struct {
		name  string
		delta bool
		// rejected is the type the client refuses whenever a response of it holds the bad tenant's resource.
		rejected string
		// churn makes the i-th registry change during the watch window.
		churn func(t *testing.T, reg registry.Registry, bad tenant.Tenant, i int)
		// kept is the last accepted config, which the client must still hold after the window.
		kept func(c *adsClient) bool
	}{
		{
			name: "sotw scopes, other tenants created", rejected: resource.ScopedRouteType,
			churn: func(t *testing.T, reg registry.Registry, _ tenant.Tenant, i int) {
				create(t, reg, newTenant(fmt.Sprintf("churn-%04d", i), tenant.Active))
			},
			kept: func(c *adsClient) bool { return servable("good")(c) && len(c.res[resource.ScopedRouteType]) == 1 },
		},
		{
			name: "delta routes, the rejected tenant's plan changed", delta: true, rejected: resource.RouteType,
			churn: func(t *testing.T, reg registry.Registry, bad tenant.Tenant, i int) {
				// A new plan name every time: changes coalesced into one publish never add up to
				// the route already sent.
				setPlan(t, reg, bad, fmt.Sprintf("plan-%04d", i))
			},
			kept: func(c *adsClient) bool { return servable("good")(c) && !c.has(resource.RouteType, scopeOf("bad")) },
		},
	}
	const (
		window     = 3 * time.Second
		churnEvery = 5 * time.Millisecond
	)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			reg := registry.NewMemory()
			create(t, reg, newTenant("good", tenant.Active))
			cfg := testConfig()
			h := startControlPlane(t, reg, cfg)
			picky := dialADS(t, h.addr, "picky", tc.delta, rejecting(func(typ string, res map[string]proto.Message) error {
				if _, ok := res[scopeOf("bad")]; ok && typ == tc.rejected {
					return fmt.Errorf("%s tenant-bad: invalid (test)", shortType(typ))
				}
				return nil
			}))
			picky.waitFor(t, waitLong, "good", servable("good"))
			bad := create(t, reg, newTenant("bad", tenant.Active))
			picky.waitFor(t, waitLong, "the first NACK", func(c *adsClient) bool { return c.nacks > 0 })

			before, nacksBefore := picky.counts()
			publishedBefore := h.publishs.Load()
			start := time.Now()
			changes := 0
			for time.Since(start) < window {
				tc.churn(t, reg, bad, changes)
				changes++
				time.Sleep(churnEvery)
			}
			after, nacksAfter := picky.counts()
			elapsed := time.Since(start)
			published := int(h.publishs.Load() - publishedBefore)

			// Each push after a NACK waits at least the initial backoff (which only grows until an
			// ACK), so pushes of the type are at least that far apart: the window holds at most
			// elapsed/backoff of them, plus one for delivery jitter.
			backoff := cfg.XDS.NACKBackoff.D()
			bound := int(elapsed/backoff) + 1
			if published <= 3*bound {
				t.Fatalf("only %d publishes (%d registry changes) in %s: too few to tell a backoff of %s from none",
					published, changes, elapsed, backoff)
			}
			resent := after[tc.rejected] - before[tc.rejected]
			t.Logf("%s: %d registry changes, %d publishes, %d pushes and %d NACKs in %s (bound %d)",
				shortType(tc.rejected), changes, published, resent, nacksAfter-nacksBefore, elapsed, bound)
			if resent > bound {
				t.Errorf("the rejected %s was re-sent %d times in %s while the registry changed %d times (%d publishes): a resend storm; a %s backoff allows at most %d",
					shortType(tc.rejected), resent, elapsed, changes, published, backoff, bound)
			}
			if resent < 1 {
				t.Errorf("no %s pushed in %s of changes after a NACK: the backoff held the type forever instead of %s", shortType(tc.rejected), elapsed, backoff)
			}
			if n := nacksAfter - nacksBefore; n > bound {
				t.Errorf("%d NACKs in %s: a resend storm; a %s backoff allows at most %d", n, elapsed, backoff, bound)
			}
			picky.waitFor(t, time.Second, "the last accepted config kept", tc.kept)

			setStatus(t, reg, bad, tenant.Suspended)
			create(t, reg, newTenant("after", tenant.Active))
			slugs := activeSlugs(t, reg)
			picky.waitFor(t, waitLong, "convergence once the bad tenant is gone", func(c *adsClient) bool {
				return servable(slugs...)(c) && gone("bad")(c)
			})
			waitUntil(t, waitLong, "the server to see the ACK that ends the backoff", func() bool {
				return !inBackoff(h.srv.nacks, "picky", tc.rejected)
			})
			// The ACK followed every NACK on the stream, so the server has counted them all.
			_, nacks := picky.counts()
			if got := testutil.ToFloat64(h.srv.metrics.nacks.WithLabelValues(shortType(tc.rejected))); got != float64(nacks) {
				t.Errorf("nack metric = %v, want %d (every NACK the client sent)", got, nacks)
			}
		})
	}
}

// setPlan moves the tenant to the plan, which changes its route configuration only.
func setPlan(t testing.TB, reg registry.Registry, tn tenant.Tenant, plan string) {
	t.Helper()
	cur, err := reg.Get(context.Background(), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur.Plan = plan
	if _, err := reg.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
}

// activeSlugs are the slugs of every tenant the control plane serves.
func activeSlugs(t testing.TB, reg registry.Registry) []string {
	t.Helper()
	all, _, err := reg.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var slugs []string
	for _, tn := range all {
		if tn.Status == tenant.Active {
			slugs = append(slugs, tn.Slug)
		}
	}
	return slugs
}

// inBackoff reports whether the server holds pushes of the type to the node until it accepts one.
func inBackoff(n *nacks, node, typeURL string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.entries[nackKey{node: node, typeURL: typeURL}]
	return ok
}

// waitUntil polls cond, for state the server changes without telling a client.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
