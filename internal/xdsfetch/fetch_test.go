package xdsfetch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/xdsfetch"
	"github.com/tenantgate/tenantgate/xds"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestFetch_SeesEveryTenantAndMatchesItsHost runs the real xDS server and checks that a fetch sees
// each active tenant's scope, routes and cluster, and that Match routes hosts as Envoy would.
func TestFetch_SeesEveryTenantAndMatchesItsHost(t *testing.T) {
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) { seesEveryTenant(t, opts...) })
	}
}

// protocols are the two ADS variants Envoy speaks.
var protocols = map[string][]xdsfetch.Option{"sotw": nil, "delta": {xdsfetch.Delta()}}

func seesEveryTenant(t *testing.T, opts ...xdsfetch.Option) {
	tenants := []tenant.Tenant{
		{ID: "3f1c2a9e-6b7d-4c1e-9a2f-0d5e8b7c6a41", Slug: "acme", Name: "Acme", Plan: "enterprise", Model: tenant.Silo, Status: tenant.Active,
			Upstream: tenant.Upstream{Endpoints: []tenant.Endpoint{{Host: "127.0.0.1", Port: 8081}}}},
		{ID: "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", Slug: "globex", Name: "Globex", Plan: "free", Model: tenant.Pool, Status: tenant.Active},
		{ID: "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e", Slug: "initech", Name: "Initech", Plan: "free", Model: tenant.Pool, Status: tenant.Suspended},
	}
	got, err := fetchFrom(t, tenants, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Scopes) != 2 || len(got.Routes) != 2 {
		t.Fatalf("scopes %d, routes %d; want 2 each (the suspended tenant has none)", len(got.Scopes), len(got.Routes))
	}

	tests := []struct {
		host, path string
		route      string
		cluster    string
		tenantID   string
		err        error
	}{
		{"acme.tenants.localhost", "/orders/7", "orders", "tenant-acme", tenants[0].ID, nil},
		{"acme.tenants.localhost:8443", "/", "default", "tenant-acme", tenants[0].ID, nil},
		{"globex.tenants.localhost", "/orders?x=1", "orders", envoybuild.PoolCluster, tenants[1].ID, nil},
		{"initech.tenants.localhost", "/", "", "", "", xdsfetch.ErrNoRoute},
		{"unknown.example.com", "/", "", "", "", xdsfetch.ErrNoRoute},
	}
	for _, tt := range tests {
		t.Run(tt.host+tt.path, func(t *testing.T) {
			m, err := got.Match(tt.host, tt.path)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Route.GetName() != tt.route || m.ClusterName != tt.cluster || m.Cluster == nil {
				t.Errorf("route %q cluster %q (%v), want %q %q", m.Route.GetName(), m.ClusterName, m.Cluster != nil, tt.route, tt.cluster)
			}
			if m.ContextExtensions[envoybuild.ContextTenantID] != tt.tenantID {
				t.Errorf("context extensions %v, want tenant %s", m.ContextExtensions, tt.tenantID)
			}
			if m.Endpoints == nil && m.Cluster.GetLoadAssignment() == nil {
				t.Errorf("cluster %s has no endpoints, neither over EDS nor inline", m.ClusterName)
			}
		})
	}
}

// fetchFrom serves the tenants from a real xDS server and fetches its config.
func fetchFrom(t *testing.T, tenants []tenant.Tenant, opts ...xdsfetch.Option) (*xdsfetch.Config, error) {
	t.Helper()
	return serve(t, tenants)(opts...)
}

// serve runs a real xDS server for the tenants until the test ends, and returns a fetch from it.
func serve(t testing.TB, tenants []tenant.Tenant) func(opts ...xdsfetch.Option) (*xdsfetch.Config, error) {
	t.Helper()
	cfg := config.Default()
	cfg.XDS.Routes = []config.XDSRoute{{Name: "orders", Prefix: "/orders"}, {Name: "default", Prefix: "/"}}
	srv := xds.New(envoybuild.ParamsFrom(&cfg), xds.WithLogger(slog.New(slog.DiscardHandler)))
	srv.OnChange(snapshot.New(tenants, 1), tenants)

	ctx, cancel := context.WithCancel(context.Background())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = srv.Serve(ctx, lis); done <- struct{}{} }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); cancel(); <-done; <-done })
	return func(opts ...xdsfetch.Option) (*xdsfetch.Config, error) {
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		defer fcancel()
		return xdsfetch.Fetch(fctx, conn, &corev3.Node{Id: "test", Cluster: "test"}, opts...)
	}
}

// BenchmarkFetch measures one complete fetch of 1000 tenants (what `tenantgate explain` and the
// end-to-end test do per look), delta against the state-of-the-world baseline.
func BenchmarkFetch(b *testing.B) {
	tenants := make([]tenant.Tenant, 1000)
	for i := range tenants {
		tenants[i] = tenant.Tenant{ID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Slug: fmt.Sprintf("t%d", i),
			Name: "T", Plan: "free", Model: tenant.Pool, Status: tenant.Active}
	}
	fetch := serve(b, tenants)
	var base float64
	for _, name := range []string{"sotw", "delta"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				got, err := fetch(protocols[name]...)
				if err != nil {
					b.Fatal(err)
				}
				if len(got.Routes) != len(tenants) {
					b.Fatalf("%d routes", len(got.Routes))
				}
			}
			per := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if name == "sotw" {
				base = per
			} else if base > 0 {
				b.ReportMetric(per/base, "x_sotw")
			}
		})
	}
}

// TestFetch_NoTenantsIsAnAnswerToo: with no tenant, the empty scope set still completes a fetch
// (an Envoy waits for that answer to finish initialising).
func TestFetch_NoTenantsIsAnAnswerToo(t *testing.T) {
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) {
			got, err := fetchFrom(t, nil, opts...)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Scopes) != 0 || len(got.Routes) != 0 || len(got.Listeners) != 1 || got.Clusters[envoybuild.PoolCluster] == nil {
				t.Fatalf("scopes %d routes %d listeners %d clusters %d", len(got.Scopes), len(got.Routes), len(got.Listeners), len(got.Clusters))
			}
			if _, err := got.Match("acme.tenants.localhost", "/"); !errors.Is(err, xdsfetch.ErrNoRoute) {
				t.Fatalf("Match = %v, want ErrNoRoute", err)
			}
		})
	}
}
