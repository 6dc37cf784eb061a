package ratelimit

import (
	"context"
	"log/slog"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// Tenants the tests use.
const (
	acmeID   = "6f1c2a9e-3b4d-4e5f-8a7b-1c2d3e4f5a6b"
	globexID = "7a2b3c4d-5e6f-4a1b-9c8d-2e3f4a5b6c7d"
	hooliID  = "8b3c4d5e-6f7a-4b2c-8d9e-3f4a5b6c7d8e" // suspended
)

func testTenants() []tenant.Tenant {
	return []tenant.Tenant{
		{ID: acmeID, Slug: "acme", Plan: "pro", Model: tenant.Pool, Status: tenant.Active},
		{ID: globexID, Slug: "globex", Plan: "strict", Model: tenant.Pool, Status: tenant.Active},
		{ID: hooliID, Slug: "hooli", Plan: "pro", Model: tenant.Pool, Status: tenant.Suspended},
	}
}

func win(limit int64, period time.Duration) config.Window {
	return config.Window{Limit: limit, Period: config.Duration(period)}
}

// testPlans: "pro" fails open, "strict" fails closed, "tiny" is the most restrictive.
func testPlans() map[string]config.Plan {
	return map[string]config.Plan{
		"pro": {
			Windows:     []config.Window{win(5, 400*time.Millisecond), win(8, 2*time.Second)},
			Endpoints:   map[string][]config.Window{"search": {win(2, 400*time.Millisecond)}},
			FailureMode: "open",
		},
		"strict": {Windows: []config.Window{win(3, 400*time.Millisecond)}, FailureMode: "closed"},
		"tiny":   {Windows: []config.Window{win(1, time.Hour)}, FailureMode: "open"},
	}
}

// lookup is a tenant lookup over a fixed snapshot.
func lookup(ts []tenant.Tenant) TenantLookup {
	s := snapshot.New(ts, 1)
	return LookupFunc(s.ByID)
}

func newTestLimiter(t testing.TB, store Store, mod ...func(*Config)) *Limiter {
	t.Helper()
	cfg := Config{Store: store, Plans: testPlans(), Tenants: lookup(testTenants()), OverLimitCacheSize: 1000,
		Log: slog.New(slog.DiscardHandler)}
	for _, m := range mod {
		m(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// storeCase is one store the shared suites run against.
type storeCase struct {
	name string
	open func(t testing.TB) Store
}

func storeCases() []storeCase {
	return []storeCase{
		{"memory", func(testing.TB) Store { return NewMemoryStore() }},
		{"redis", func(t testing.TB) Store { return openTestRedisStore(t) }},
	}
}

func openTestRedisStore(t testing.TB) *RedisStore {
	r := testenv.NewRedis(t)
	s, err := NewRedisStore(r.Client, r.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// entries builds a descriptor from key, value pairs.
func entries(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func withHits(d *ratelimitv3.RateLimitDescriptor, hits uint64) *ratelimitv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(hits)
	return d
}

func request(ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: DefaultDomain, Descriptors: ds}
}

func tenantReq(id string) *rlsv3.RateLimitRequest { return request(entries(entryTenant, id)) }

func should(t testing.TB, l *Limiter, req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := l.ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

// admitN sends the request n times and returns how many were admitted.
func admitN(t testing.TB, l *Limiter, req *rlsv3.RateLimitRequest, n int) int {
	t.Helper()
	ok := 0
	for range n {
		if should(t, l, req).GetOverallCode() == rlsv3.RateLimitResponse_OK {
			ok++
		}
	}
	return ok
}

func header(resp *rlsv3.RateLimitResponse, name string) string {
	for _, h := range resp.GetResponseHeadersToAdd() {
		if h.GetKey() == name {
			return h.GetValue()
		}
	}
	return ""
}
