package ratelimit

import (
	"context"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// serveGRPC serves the limiter on a loopback port and returns a client.
func serveGRPC(t testing.TB, l *Limiter) rlsv3.RateLimitServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	l.Register(s)
	go func() { _ = s.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
	})
	return rlsv3.NewRateLimitServiceClient(conn)
}

func TestShouldRateLimit_OverGRPCReportsEveryDescriptorAndTheHeaders(t *testing.T) {
	l := newTestLimiter(t, NewMemoryStore())
	client := serveGRPC(t, l)
	req := request(entries(entryTenant, acmeID), entries(entryTenant, acmeID, entryEndpoint, "search"), entries("remote_address", "10.0.0.1"))
	var resp *rlsv3.RateLimitResponse
	for i := range 2 {
		var err error
		resp, err = client.ShouldRateLimit(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("call %d: %v", i, resp.GetOverallCode())
		}
	}
	st := resp.GetStatuses()
	if len(st) != 3 {
		t.Fatalf("%d statuses for 3 descriptors", len(st))
	}
	// Tenant-wide: 5/400ms has 3 left, 8/2s has 6: the 400ms window is reported.
	if got := st[0].GetCurrentLimit(); got.GetRequestsPerUnit() != 12 || got.GetUnit() != rlsv3.RateLimitResponse_RateLimit_SECOND || got.GetName() != "5/400ms" {
		t.Errorf("tenant-wide current_limit %v", got)
	}
	if st[0].GetLimitRemaining() != 3 || st[0].GetDurationUntilReset().AsDuration() <= 0 {
		t.Errorf("tenant-wide remaining %d reset %v", st[0].GetLimitRemaining(), st[0].GetDurationUntilReset().AsDuration())
	}
	if st[1].GetLimitRemaining() != 0 || st[1].GetCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("search: code %v remaining %d, want OK 0", st[1].GetCode(), st[1].GetLimitRemaining())
	}
	if st[2].GetCode() != rlsv3.RateLimitResponse_OK || st[2].GetCurrentLimit() != nil {
		t.Errorf("foreign descriptor status %v, want a bare OK", st[2])
	}
	want := map[string]string{
		headerRateLimitPolicy: `"400ms";q=5;w=1, "2s";q=8;w=2, "search 400ms";q=2;w=1`,
		headerXLimit:          "2",
		headerXRemaining:      "0",
		headerXReset:          "1",
	}
	for k, v := range want {
		if got := header(resp, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	// The most constraining window first, then what remains in every other.
	if got := header(resp, headerRateLimit); !regexp.MustCompile(`^"search 400ms";r=0;t=1, "400ms";r=3;t=1, "2s";r=6;t=[1-3]$`).MatchString(got) {
		t.Errorf("RateLimit = %q", got)
	}

	resp, err := client.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || resp.GetStatuses()[1].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT ||
		resp.GetStatuses()[0].GetCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("third call: %v", resp)
	}
}

func TestShouldRateLimit_WhatIsNotOursIsAllowedAndCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	store := &countingStore{Store: NewMemoryStore()}
	l := newTestLimiter(t, store, func(c *Config) { c.Metrics = reg })
	cases := []struct {
		name string
		req  *rlsv3.RateLimitRequest
	}{
		{"another domain", &rlsv3.RateLimitRequest{Domain: "other", Descriptors: tenantReq(globexID).Descriptors}},
		{"no tenant entry", request(entries("remote_address", "10.0.0.1"))},
		{"an extra entry", request(entries(entryTenant, globexID, "path", "/x"))},
		{"a repeated entry", request(entries(entryTenant, globexID, entryTenant, acmeID))},
		{"an empty tenant", request(entries(entryTenant, ""))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for range 5 {
				if resp := should(t, l, tc.req); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
					t.Fatalf("%v", resp)
				}
			}
		})
	}
	if n := store.applies.Load(); n != 0 {
		t.Errorf("%d store calls for requests that are not ours", n)
	}
	if got := testutil.ToFloat64(l.metrics.ignoredDomain); got != 5 {
		t.Errorf("other-domain metric %v, want 5", got)
	}
	if got := testutil.ToFloat64(l.metrics.ignoredDescriptor); got != 20 {
		t.Errorf("foreign-descriptor metric %v, want 20", got)
	}
}

func TestShouldRateLimit_PlanComesFromTheRegistry(t *testing.T) {
	const unknown = "9c4d5e6f-7a8b-4c3d-9e0f-4a5b6c7d8e9f"
	cases := []struct {
		name   string
		tenant string
		want   int // admitted of 10
	}{
		{"an active tenant gets its plan", acmeID, 5},
		{"an unknown tenant gets the most restrictive plan", unknown, 1},
		{"a suspended tenant gets the most restrictive plan", hooliID, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newTestLimiter(t, NewMemoryStore())
			if got := admitN(t, l, tenantReq(tc.tenant), 10); got != tc.want {
				t.Fatalf("admitted %d, want %d", got, tc.want)
			}
		})
	}
	t.Run("unknown and deleted tenants share one counter", func(t *testing.T) {
		ts := append(testTenants(), tenant.Tenant{ID: unknown, Slug: "gone", Plan: "pro", Status: tenant.Deleted})
		l := newTestLimiter(t, NewMemoryStore(), func(c *Config) { c.Tenants = lookup(ts) })
		if admitN(t, l, tenantReq("made-up"), 1) != 1 || admitN(t, l, tenantReq(unknown), 1) != 0 {
			t.Fatal("a deleted tenant got quota of its own")
		}
	})
	t.Run("a plan change applies at once", func(t *testing.T) {
		ts := testTenants()
		var snap atomic.Pointer[snapshot.Snapshot]
		snap.Store(snapshot.New(ts, 1))
		l := newTestLimiter(t, NewMemoryStore(), func(c *Config) {
			c.Tenants = LookupFunc(func(id string) (*tenant.Tenant, bool) { return snap.Load().ByID(id) })
		})
		if got := admitN(t, l, tenantReq(globexID), 4); got != 3 {
			t.Fatalf("strict plan admitted %d, want 3", got)
		}
		ts[1].Plan = "pro"
		snap.Store(snapshot.New(ts, 2))
		if got := admitN(t, l, tenantReq(globexID), 4); got != 2 {
			t.Fatalf("after the change to pro (5 per 400ms, 3 used) admitted %d, want 2", got)
		}
	})
	t.Run("a request naming two tenants is refused without counting", func(t *testing.T) {
		store := &countingStore{Store: NewMemoryStore()}
		l := newTestLimiter(t, store)
		resp := should(t, l, request(entries(entryTenant, acmeID), entries(entryTenant, globexID)))
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || store.applies.Load() != 0 {
			t.Fatalf("%v, %d store calls", resp, store.applies.Load())
		}
	})
}

func TestShouldRateLimit_HitsAddend(t *testing.T) {
	l := newTestLimiter(t, NewMemoryStore())
	req := tenantReq(acmeID)
	req.HitsAddend = 3
	if admitN(t, l, req, 2) != 1 {
		t.Fatal("request hits_addend 3 twice in a limit of 5: want one admitted")
	}
	// A descriptor's hits_addend overrides the request's.
	d := withHits(entries(entryTenant, acmeID), 2)
	if admitN(t, l, &rlsv3.RateLimitRequest{Domain: DefaultDomain, HitsAddend: 3, Descriptors: []*ratelimitv3.RateLimitDescriptor{d}}, 1) != 1 {
		t.Fatal("descriptor hits_addend 2 on 3 of 5 refused")
	}
	resp := should(t, l, tenantReq(acmeID))
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("6th hit admitted: %v", resp)
	}
}

func TestOverLimitCache_AnswersWithoutTheStoreUntilTheWindowFrees(t *testing.T) {
	store := &countingStore{Store: NewMemoryStore()}
	l := newTestLimiter(t, store)
	admitN(t, l, tenantReq(globexID), 3)
	before := store.applies.Load()
	resp := should(t, l, tenantReq(globexID))
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || store.applies.Load() != before {
		t.Fatalf("over-limit request: %v, store calls %d -> %d", resp.GetOverallCode(), before, store.applies.Load())
	}
	if reset := resp.GetStatuses()[0].GetDurationUntilReset().AsDuration(); reset <= 0 || reset > 410*time.Millisecond {
		t.Errorf("cached reset %v", reset)
	}
	// A check without hits still goes to the store (the cache knows only that hits are refused).
	if resp := should(t, l, request(withHits(entries(entryTenant, globexID), 0))); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("check-only at the limit: %v", resp.GetOverallCode())
	}
	time.Sleep(420 * time.Millisecond)
	if got := admitN(t, l, tenantReq(globexID), 3); got != 3 {
		t.Fatalf("after the window freed admitted %d, want 3", got)
	}
}

func TestOverLimitCache_IsBounded(t *testing.T) {
	c := newOverLimitCache(1000)
	for i := range 5000 {
		c.add("k"+string(rune(i)), 10_000, 1)
	}
	// Full, not emptied: an add that kept nothing would pass the bound alone.
	if n := c.len(); n == 0 || n > 1000 {
		t.Fatalf("%d entries, bound 1000", n)
	}
	if last := "k" + string(rune(4999)); c.shard(last).until[last] != 10_000 {
		t.Fatal("the latest entry was evicted to make room for itself")
	}
}

func TestTenantsChanged_PurgesDeletedTenantsCounters(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			l := newTestLimiter(t, sc.open(t))
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { _ = l.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()

			ts := testTenants()
			l.TenantsChanged(snapshot.New(ts, 1), ts) // the initial load: nothing purged
			admitN(t, l, tenantReq(acmeID), 5)
			admitN(t, l, tenantReq(globexID), 3)
			deleted := ts[0]
			deleted.Status = tenant.Deleted
			l.TenantsChanged(nil, []tenant.Tenant{deleted, ts[1]})
			// The purge runs on Run's goroutine. Within 1s the 2s window would still count 5 unless
			// it was purged.
			used := func() int64 {
				d, err := l.decide(context.Background(), l.parse(request(withHits(entries(entryTenant, acmeID), 0))))
				if err != nil {
					t.Fatal(err)
				}
				var n int64
				for _, st := range d.States {
					n += st.Used
				}
				return n
			}
			deadline := time.Now().Add(time.Second)
			for used() != 0 {
				if time.Now().After(deadline) {
					t.Fatal("deleted tenant's counters still there after 1s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if admitN(t, l, tenantReq(globexID), 1) != 0 {
				t.Fatal("a tenant that was not deleted lost its counters")
			}
		})
	}
}

func TestPing_SaysTheStoreIsDown(t *testing.T) {
	l := newTestLimiter(t, failingStore{})
	if err := l.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "down") {
		t.Fatalf("Ping = %v", err)
	}
}

// countingStore counts Apply calls.
type countingStore struct {
	Store
	applies atomic.Int64
}

func (c *countingStore) Apply(ctx context.Context, tenantID string, cs []counter) (applied, error) {
	c.applies.Add(1)
	return c.Store.Apply(ctx, tenantID, cs)
}

// failingStore is a store that is never reachable.
type failingStore struct{}

func (failingStore) Apply(context.Context, string, []counter) (applied, error) {
	return applied{}, errStoreDown
}
func (failingStore) PurgeTenant(context.Context, string) error { return errStoreDown }
func (failingStore) Ping(context.Context) error                { return errStoreDown }

var errStoreDown = net.ErrClosed

func TestBreaker_OpensAfterConsecutiveFailuresAndLetsOneProbeThrough(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(3, 100*time.Millisecond)
	b.now = func() time.Time { return now }
	for i := range 2 {
		if b.failure() {
			t.Fatalf("opened on failure %d of 3", i+1)
		}
	}
	if !b.allow() {
		t.Fatal("open before 3 consecutive failures")
	}
	if !b.failure() || b.allow() {
		t.Fatal("did not open on the third failure")
	}
	now = now.Add(101 * time.Millisecond)
	probe := b.allow()
	if second := b.allow(); !probe || second {
		t.Fatalf("after the cooldown allow() gave %v then %v, want exactly one probe", probe, second)
	}
	b.success()
	for range 2 {
		if !b.allow() || b.isOpen() {
			t.Fatal("a successful probe did not close the breaker")
		}
	}
}
