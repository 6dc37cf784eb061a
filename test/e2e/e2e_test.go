package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/tenantgate/tenantgate/internal/xdsfetch"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEndToEnd walks the product's life cycle through its public interfaces only: the provisioner
// HTTP API, ADS, ext_authz Check and ShouldRateLimit, each step asserting what a client observes.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	c := startCluster(t)
	s := &suite{c: c, tenants: map[string]apiTenant{}}
	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"1 create tenants on three plans", s.createTenants},
		{"2 ADS serves every tenant's routes and clusters", s.adsSeesTenants},
		{"3 Check stamps the right tenant and denies the wrong ones", s.checkDecides},
		{"3b tenantgate explain tells the route, the decision and the quota", s.explainTells},
		{"4 both sidecars enforce each plan's window jointly", s.rateLimitsJointly},
		{"5 suspend denies and removes routes; resume restores both", s.suspendResume},
		{"6 delete removes routes, counters and resources for good", s.deleteForGood},
		{"7 Redis then Postgres outages degrade as configured and recover", s.outages},
	}
	for _, st := range steps {
		if !t.Run(st.name, st.fn) {
			return // later steps build on this one
		}
	}
}

type suite struct {
	c       *cluster
	tenants map[string]apiTenant // by plan
}

func (s *suite) createTenants(t *testing.T) {
	for i, plan := range []string{"free", "starter", "professional"} {
		req := map[string]any{
			"name": "E2E " + plan, "slug": fmt.Sprintf("e2e-%s", plan), "plan": plan, "model": "pool",
			"admin_email": fmt.Sprintf("admin@%s.example", plan),
		}
		if i == 0 {
			// The free tenant has an upstream of its own, so it gets a cluster of its own.
			req["upstream"] = map[string]any{"endpoints": []map[string]any{{"host": "127.0.0.1", "port": 18090}}}
		}
		var tn apiTenant
		if code := s.c.call(t, http.MethodPost, "/v1/tenants", req, &tn); code != http.StatusAccepted {
			t.Fatalf("create %s tenant: %d", plan, code)
		}
		s.tenants[plan] = tn
	}
	for plan, tn := range s.tenants {
		got := s.c.waitStatus(t, tn.ID, "active")
		if got.Plan != plan || got.Slug != "e2e-"+plan {
			t.Errorf("tenant %s: plan %q slug %q", tn.ID, got.Plan, got.Slug)
		}
		eventually(t, 10*time.Second, "welcome email to the "+plan+" admin", func() error {
			if !s.c.smtp.received(fmt.Sprintf("admin@%s.example", plan)) {
				return errNotYet
			}
			return nil
		})
	}
}

// routeFor waits for the host to route, and returns the match.
func (s *suite) routeFor(t *testing.T, slug string) *xdsfetch.Match {
	t.Helper()
	var m *xdsfetch.Match
	eventually(t, 10*time.Second, "routes of "+slug, func() error {
		var err error
		m, err = s.c.xdsConfig(t).Match(host(slug)+":443", "/orders")
		return err
	})
	return m
}

// waitNoRoute waits until the host no longer routes, over both ADS variants.
func (s *suite) waitNoRoute(t *testing.T, slug string) {
	t.Helper()
	for _, opts := range [][]xdsfetch.Option{nil, {xdsfetch.Delta()}} {
		eventually(t, 10*time.Second, "no routes for "+slug, func() error {
			cfg := s.c.xdsConfig(t, opts...)
			if _, err := cfg.Match(host(slug), "/orders"); !errors.Is(err, xdsfetch.ErrNoRoute) {
				return fmt.Errorf("still routed (err %v)", err)
			}
			for name := range cfg.Routes {
				if strings.Contains(name, slug) {
					return fmt.Errorf("route configuration %s still served", name)
				}
			}
			return nil
		})
	}
}

func (s *suite) adsSeesTenants(t *testing.T) {
	for plan, tn := range s.tenants {
		m := s.routeFor(t, tn.Slug)
		if got := m.ContextExtensions["tenant_id"]; got != tn.ID {
			t.Errorf("%s: route tells ext_authz tenant %q, want %s", plan, got, tn.ID)
		}
		if m.Cluster == nil {
			t.Errorf("%s: route sends to cluster %s, which is not served", plan, m.ClusterName)
		}
		wantCluster := "tenantgate_pool"
		if plan == "free" {
			wantCluster = "tenant-" + tn.Slug
		}
		if m.ClusterName != wantCluster {
			t.Errorf("%s: cluster %s, want %s", plan, m.ClusterName, wantCluster)
		}
		if len(m.Route.GetRoute().GetRateLimits()) == 0 {
			t.Errorf("%s: route has no rate-limit actions", plan)
		}
		// An Envoy on delta ADS (what `tenantgate bootstrap` and envoy/gateway.yaml use) sees the same.
		d, err := s.c.xdsConfig(t, xdsfetch.Delta()).Match(host(tn.Slug), "/orders")
		if err != nil {
			t.Fatalf("%s over delta ADS: %v", plan, err)
		}
		if d.ClusterName != m.ClusterName || d.Cluster == nil || d.ContextExtensions["tenant_id"] != tn.ID {
			t.Errorf("%s over delta ADS: cluster %s (%v), tenant %q", plan, d.ClusterName, d.Cluster != nil, d.ContextExtensions["tenant_id"])
		}
	}
	free := s.routeFor(t, s.tenants["free"].Slug)
	eps := free.Endpoints.GetEndpoints()
	if len(eps) != 1 || eps[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue() != 18090 {
		t.Errorf("free tenant's own cluster endpoints = %v, want 127.0.0.1:18090", eps)
	}
}

func (s *suite) checkDecides(t *testing.T) {
	iss := s.c.issuer
	for plan, tn := range s.tenants {
		ext := s.routeFor(t, tn.Slug).ContextExtensions
		for i, sc := range s.c.sidecars {
			resp := check(t, sc, host(tn.Slug), bearer(iss.tenantToken(t, tn.ID)), ext)
			if code := deniedStatus(resp); code != 0 {
				t.Fatalf("%s via sidecar %d: denied %d %s", plan, i+1, code, denialCode(resp))
			}
			for name, want := range map[string]string{"x-tenant-id": tn.ID, "x-tenant-slug": tn.Slug, "x-tenant-plan": plan, "x-tenant-model": "pool", "x-auth-subject": "user-1"} {
				if got, _ := stamped(resp, name); got != want {
					t.Errorf("%s: stamped %s = %q, want %q", plan, name, got, want)
				}
			}
		}
	}

	a, b := s.tenants["free"], s.tenants["starter"]
	extB := s.routeFor(t, b.Slug).ContextExtensions
	sc := s.c.sidecars[0]
	expired := iss.token(t, jwt.MapClaims{"tenant_id": a.ID, "iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
	unknownIssuer := iss.token(t, jwt.MapClaims{"tenant_id": a.ID, "iss": "https://evil.example"})
	denials := []struct {
		name    string
		host    string
		headers map[string]string
		ext     map[string]string
		status  int
		code    string
	}{
		{"A's token on B's host", host(b.Slug), bearer(iss.tenantToken(t, a.ID)), extB, 403, "tenant_denied"},
		{"A's token on B's route under an unbound host", "api.elsewhere.example", bearer(iss.tenantToken(t, a.ID)), extB, 403, "tenant_denied"},
		{"a spoofed x-tenant-id and no token", host(b.Slug), map[string]string{"x-tenant-id": b.ID}, extB, 401, "missing_credential"},
		{"an expired token", host(a.Slug), bearer(expired), nil, 401, "invalid_token"},
		{"a token from an unknown issuer", host(a.Slug), bearer(unknownIssuer), nil, 401, "invalid_token"},
	}
	for _, d := range denials {
		resp := check(t, sc, d.host, d.headers, d.ext)
		if got := deniedStatus(resp); got != d.status || denialCode(resp) != d.code {
			t.Errorf("%s: status %d reason %q, want %d %q", d.name, got, denialCode(resp), d.status, d.code)
		}
	}

	// A's token with a spoofed x-tenant-id naming B: allowed for A, and Envoy is told to overwrite
	// the header with A's id (never append) and to drop the other spoofed tenant headers.
	headers := bearer(iss.tenantToken(t, a.ID))
	headers["x-tenant-id"] = b.ID
	headers["x-tenant-region"] = "spoofed"
	resp := check(t, sc, host(a.Slug), headers, s.routeFor(t, a.Slug).ContextExtensions)
	got, opt := stamped(resp, "x-tenant-id")
	if deniedStatus(resp) != 0 || got != a.ID {
		t.Fatalf("spoofed x-tenant-id: status %d, stamped %q, want allowed as %s", deniedStatus(resp), got, a.ID)
	}
	//lint:ignore SA1019 the deprecated append field is what Envoy releases before 1.37 read (DESIGN.md)
	if opt.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || opt.GetAppend() == nil || opt.GetAppend().GetValue() {
		t.Errorf("x-tenant-id is not overwritten: %v", opt)
	}
	if !contains(resp.GetOkResponse().GetHeadersToRemove(), "x-tenant-region") {
		t.Errorf("spoofed x-tenant-region not removed: %v", resp.GetOkResponse().GetHeadersToRemove())
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func (s *suite) explainTells(t *testing.T) {
	a, b := s.tenants["professional"], s.tenants["starter"]
	run := func(args ...string) string { return s.explain(t, args...) }
	out := run("--url", "https://"+host(a.Slug)+"/orders", "--token", s.c.issuer.tenantToken(t, a.ID))
	for _, want := range []string{"scope        tenant-" + a.Slug, "authz told   tenant_id=" + a.ID, "cluster      tenantgate_pool", "ALLOWED",
		"x-tenant-id: " + a.ID, "endpoint=default", "12 per hour, 12 remaining"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	out = run("--url", "https://"+host(b.Slug)+"/orders", "-H", "Authorization: Bearer "+s.c.issuer.tenantToken(t, a.ID))
	for _, want := range []string{"DENIED  403", "tenant_denied", "not asked: the request was denied"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
}

// explain runs `tenantgate explain` against the second sidecar and the control plane.
func (s *suite) explain(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.c.bin, append([]string{"explain", "--grpc-addr", s.c.sidecars[1].grpc, "--xds-addr", s.c.control.xds}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tenantgate explain: %v\n%s", err, out)
	}
	return string(out)
}

func (s *suite) rateLimitsJointly(t *testing.T) {
	for plan, tn := range s.tenants {
		limit := planLimits[plan]
		var admitted atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 2*limit+6)
		for i := range 2*limit + 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := shouldRateLimit(t, s.c.sidecars[i%2], tn.ID, "default")
				if err != nil {
					errs <- err
					return
				}
				if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
					admitted.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: ShouldRateLimit: %v", plan, err)
		}
		if got := admitted.Load(); got != int64(limit) {
			t.Errorf("%s: %d admitted across both sidecars, want exactly the plan's %d", plan, got, limit)
		}
		// Explaining the next request says it is refused, and counts nothing.
		out := s.explain(t, "--url", "https://"+host(tn.Slug)+"/orders", "--token", s.c.issuer.tenantToken(t, tn.ID))
		if !strings.Contains(out, "OVER_LIMIT") || !strings.Contains(out, "0 remaining") {
			t.Errorf("%s: explain after the window filled:\n%s", plan, out)
		}
		// Another endpoint has its own window.
		if resp, err := shouldRateLimit(t, s.c.sidecars[0], tn.ID, "other"); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Errorf("%s: another endpoint is limited too: %v %v", plan, resp.GetOverallCode(), err)
		}
	}
}

func (s *suite) suspendResume(t *testing.T) {
	tn := s.tenants["starter"]
	token := s.c.issuer.tenantToken(t, tn.ID)
	ext := s.routeFor(t, tn.Slug).ContextExtensions
	if code := s.c.call(t, http.MethodPost, "/v1/tenants/"+tn.ID+"/suspend", nil, nil); code != http.StatusOK {
		t.Fatalf("suspend: %d", code)
	}
	s.c.waitStatus(t, tn.ID, "suspended")
	for i, sc := range s.c.sidecars {
		eventually(t, 10*time.Second, fmt.Sprintf("sidecar %d denies the suspended tenant", i+1), func() error {
			resp := check(t, sc, host(tn.Slug), bearer(token), ext)
			if deniedStatus(resp) != 403 || denialCode(resp) != "tenant_suspended" {
				return fmt.Errorf("status %d %s", deniedStatus(resp), denialCode(resp))
			}
			return nil
		})
	}
	s.waitNoRoute(t, tn.Slug)

	if code := s.c.call(t, http.MethodPost, "/v1/tenants/"+tn.ID+"/resume", nil, nil); code != http.StatusOK {
		t.Fatalf("resume: %d", code)
	}
	s.c.waitStatus(t, tn.ID, "active")
	for i, sc := range s.c.sidecars {
		eventually(t, 10*time.Second, fmt.Sprintf("sidecar %d allows the resumed tenant", i+1), func() error {
			if code := deniedStatus(check(t, sc, host(tn.Slug), bearer(token), ext)); code != 0 {
				return fmt.Errorf("status %d", code)
			}
			return nil
		})
	}
	if got := s.routeFor(t, tn.Slug).ContextExtensions["tenant_id"]; got != tn.ID {
		t.Errorf("restored route tells tenant %q", got)
	}
}

func (s *suite) redisClient(t *testing.T) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: s.c.redis.addr})
	t.Cleanup(func() { rc.Close() })
	return rc
}

func (s *suite) counterKeys(t *testing.T, tenantID string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := s.redisClient(t).Keys(ctx, s.c.keyPrefix+"*"+tenantID+"*").Result()
	if err != nil {
		t.Fatalf("redis KEYS: %v", err)
	}
	return keys
}

func (s *suite) deleteForGood(t *testing.T) {
	tn := s.tenants["professional"]
	before := s.c.tenant(t, tn.ID)
	if before.Resources["schema"] == nil || before.Resources["domain"] == nil {
		t.Fatalf("the tenant has no resources before deletion (%v); the test would prove nothing", before.Resources)
	}
	if len(s.counterKeys(t, tn.ID)) == 0 {
		t.Fatal("the tenant has no rate-limit counters before deletion; the test would prove nothing")
	}
	if code := s.c.call(t, http.MethodDelete, "/v1/tenants/"+tn.ID, nil, nil); code != http.StatusAccepted {
		t.Fatalf("delete: %d", code)
	}
	gone := s.c.waitStatus(t, tn.ID, "deleted")
	s.waitNoRoute(t, tn.Slug)
	eventually(t, 10*time.Second, "counters purged", func() error {
		if keys := s.counterKeys(t, tn.ID); len(keys) > 0 {
			return fmt.Errorf("keys left: %v", keys)
		}
		return nil
	})
	for k, v := range gone.Resources {
		if v != nil && v != "" {
			t.Errorf("resource %s = %v left after deletion", k, v)
		}
	}
	resp := check(t, s.c.sidecars[0], host(tn.Slug), bearer(s.c.issuer.tenantToken(t, tn.ID)), nil)
	if deniedStatus(resp) != 403 || denialCode(resp) != "tenant_denied" {
		t.Errorf("deleted tenant's token: %d %s, want 403 tenant_denied", deniedStatus(resp), denialCode(resp))
	}
	// The slug is reserved forever; a new tenant never gets the old id.
	again := map[string]any{"name": "Again", "slug": tn.Slug, "plan": "free", "model": "pool", "admin_email": "again@e2e.example"}
	if code := s.c.call(t, http.MethodPost, "/v1/tenants", again, nil); code != http.StatusConflict {
		t.Errorf("re-creating slug %s: %d, want 409", tn.Slug, code)
	}
	again["slug"] = "e2e-again"
	var fresh apiTenant
	if code := s.c.call(t, http.MethodPost, "/v1/tenants", again, &fresh); code != http.StatusAccepted {
		t.Fatalf("create another tenant: %d", code)
	}
	for _, old := range s.tenants {
		if fresh.ID == old.ID {
			t.Errorf("new tenant got the id %s of an earlier one", old.ID)
		}
	}
	if s.c.tenant(t, tn.ID).Status != "deleted" {
		t.Errorf("the deleted tenant's record changed")
	}
	s.c.waitStatus(t, fresh.ID, "active")
	s.tenants["again"] = fresh
}

func (s *suite) outages(t *testing.T) {
	free, starter := s.tenants["free"], s.tenants["starter"]
	fresh := s.tenants["again"] // free plan, no requests counted yet
	sc := s.c.sidecars[0]

	// Redis down: the free plan fails closed, the starter plan open; authorization is unaffected.
	s.c.redis.kill()
	eventually(t, 10*time.Second, "free plan fails closed without Redis", func() error {
		resp, err := shouldRateLimit(t, sc, fresh.ID, "default")
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
			return fmt.Errorf("%v %v", resp.GetOverallCode(), err)
		}
		return nil
	})
	// The starter plan fails open. (Its "default" window, full since step 4, stays refused from the
	// sidecars' cache of over-limit counters, so ask for an endpoint it has not used.)
	if resp, err := shouldRateLimit(t, s.c.sidecars[1], starter.ID, "checkout"); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("starter plan without Redis: %v %v, want OK (fails open)", resp.GetOverallCode(), err)
	}
	if code := deniedStatus(check(t, sc, host(free.Slug), bearer(s.c.issuer.tenantToken(t, free.ID)), nil)); code != 0 {
		t.Errorf("Check without Redis: denied %d", code)
	}
	// The sidecar stays ready (a gateway pod leaving its Service would be a full outage) and says
	// what it runs without.
	expectReadyDegraded(t, sc, "ratelimit redis: down")

	// Redis back: counting resumes where it left off (the starter window is still full).
	s.c.redis.restart()
	eventually(t, 15*time.Second, "rate limiting recovers with Redis", func() error {
		resp, err := shouldRateLimit(t, sc, fresh.ID, "default")
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || resp.GetStatuses()[0].GetCurrentLimit() == nil {
			return fmt.Errorf("%v %v", resp.GetOverallCode(), err)
		}
		return nil
	})

	// Postgres unreachable from the sidecars: known tenants are still decided from the last
	// snapshot, a tenant unknown to it is refused as unavailable (503), never guessed.
	s.c.pgProxy.cut()
	var late apiTenant
	lateReq := map[string]any{"name": "Late", "slug": "e2e-late", "plan": "starter", "model": "pool", "admin_email": "late@e2e.example"}
	if code := s.c.call(t, http.MethodPost, "/v1/tenants", lateReq, &late); code != http.StatusAccepted {
		t.Fatalf("create during the sidecars' outage: %d", code)
	}
	s.c.waitStatus(t, late.ID, "active") // the control plane still reaches Postgres
	if code := s.c.call(t, http.MethodPost, "/v1/tenants/"+free.ID+"/suspend", nil, nil); code != http.StatusOK {
		t.Fatalf("suspend during the outage: %d", code)
	}
	s.c.waitStatus(t, free.ID, "suspended")
	for i, side := range s.c.sidecars {
		eventually(t, 20*time.Second, fmt.Sprintf("sidecar %d refuses an unknown tenant as unavailable", i+1), func() error {
			resp := check(t, side, host(late.Slug), bearer(s.c.issuer.tenantToken(t, late.ID)), nil)
			if deniedStatus(resp) != 503 {
				return fmt.Errorf("status %d %s", deniedStatus(resp), denialCode(resp))
			}
			return nil
		})
		if code := deniedStatus(check(t, side, host(starter.Slug), bearer(s.c.issuer.tenantToken(t, starter.ID)), nil)); code != 0 {
			t.Errorf("sidecar %d: a known tenant is denied (%d) during the outage", i+1, code)
		}
		resp := check(t, side, host(starter.Slug), bearer(s.c.issuer.tenantToken(t, free.ID)), nil)
		if deniedStatus(resp) == 0 {
			t.Errorf("sidecar %d: the free tenant's token passed on the starter tenant's host during the outage", i+1)
		}
		expectReadyDegraded(t, side, "registry: down")
	}

	// Postgres gone for the control plane too: xDS keeps serving the last config (the late tenant's
	// routes included), and the API refuses rather than guesses.
	s.c.cpProxy.cut()
	if m := s.routeFor(t, late.Slug); m.ContextExtensions["tenant_id"] != late.ID {
		t.Errorf("xDS during the outage routes %s to tenant %q", late.Slug, m.ContextExtensions["tenant_id"])
	}
	if code := s.c.call(t, http.MethodGet, "/v1/tenants/"+late.ID, nil, nil); code < 500 {
		t.Errorf("the API answered %d without its database, want a 5xx", code)
	}

	// Postgres back: every part catches up with what changed meanwhile.
	if err := s.c.cpProxy.restore(); err != nil {
		t.Fatal(err)
	}
	if err := s.c.pgProxy.restore(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the API answers again", func() error {
		if code := s.c.call(t, http.MethodGet, "/v1/tenants/"+late.ID, nil, nil); code != http.StatusOK {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	for i, side := range s.c.sidecars {
		eventually(t, 30*time.Second, fmt.Sprintf("sidecar %d learns of the new tenant", i+1), func() error {
			resp := check(t, side, host(late.Slug), bearer(s.c.issuer.tenantToken(t, late.ID)), nil)
			if code := deniedStatus(resp); code != 0 {
				return fmt.Errorf("status %d %s", code, denialCode(resp))
			}
			if got, _ := stamped(resp, "x-tenant-id"); got != late.ID {
				return fmt.Errorf("stamped %q", got)
			}
			return nil
		})
		eventually(t, 30*time.Second, fmt.Sprintf("sidecar %d learns of the suspension", i+1), func() error {
			resp := check(t, side, host(free.Slug), bearer(s.c.issuer.tenantToken(t, free.ID)), nil)
			if deniedStatus(resp) != 403 || denialCode(resp) != "tenant_suspended" {
				return fmt.Errorf("status %d %s", deniedStatus(resp), denialCode(resp))
			}
			return nil
		})
	}
}

// expectReadyDegraded checks that n's /readyz answers 200 and has a line starting with line.
func expectReadyDegraded(t *testing.T, n *node, line string) {
	t.Helper()
	resp, err := http.Get("http://" + n.admin + "/readyz")
	if err != nil {
		t.Fatalf("/readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains("\n"+string(body), "\n"+line) {
		t.Errorf("/readyz during the outage = %d\n%s\nwant 200 and a line %q", resp.StatusCode, body, line)
	}
}
