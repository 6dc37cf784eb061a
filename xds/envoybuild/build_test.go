package envoybuild

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/envoyvalidate"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func testParams() Params {
	cfg := config.Default()
	cfg.BaseDomain = "tenants.example.com"
	cfg.XDS.Pool.Endpoints = []string{"app.default.svc.cluster.local:8080"}
	cfg.XDS.Routes = []config.XDSRoute{
		{Name: "reports", Prefix: "/reports/", Plans: []string{"professional", "enterprise"}},
		{Name: "api", Prefix: "/api/", Timeout: config.Duration(30e9)},
		{Name: "web", Prefix: "/"},
	}
	return ParamsFrom(&cfg)
}

func fixtureTenants() []*tenant.Tenant {
	return []*tenant.Tenant{
		{ID: "3f1c2a9e-6b7d-4c1e-9a2f-0d5e8b7c6a41", Slug: "acme", Name: "Acme", Plan: "enterprise", Model: tenant.Silo, Status: tenant.Active,
			Upstream: tenant.Upstream{Cluster: "acme", Endpoints: []tenant.Endpoint{{Host: "10.1.0.7", Port: 8080}, {Host: "10.1.0.8", Port: 8080}}}},
		{ID: "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", Slug: "globex", Name: "Globex", Plan: "professional", Model: tenant.Bridge, Status: tenant.Active,
			Upstream: tenant.Upstream{Endpoints: []tenant.Endpoint{{Host: "globex.apps.svc", Port: 8080}}}},
		{ID: "b2c3d4e5-f6a7-4b8c-9d0e-1f2a3b4c5d6e", Slug: "initech", Name: "Initech", Plan: "free", Model: tenant.Pool, Status: tenant.Active},
		{ID: "c3d4e5f6-a7b8-4c9d-8e0f-2a3b4c5d6e7f", Slug: "hooli", Name: "Hooli", Plan: "starter", Model: tenant.Namespace, Status: tenant.Suspended},
		{ID: "d4e5f6a7-b8c9-4d0e-9f1a-3b4c5d6e7f80", Slug: "umbrella", Name: "Umbrella", Plan: "free", Model: tenant.Silo, Status: tenant.Deleted,
			Upstream: tenant.Upstream{Endpoints: []tenant.Endpoint{{Host: "10.9.9.9", Port: 80}}}},
		{ID: "e5f6a7b8-c9d0-4e1f-8a2b-4c5d6e7f8091", Slug: "soylent", Name: "Soylent", Plan: "free", Model: tenant.Pool, Status: tenant.Provisioning},
	}
}

// render writes every resource as indented JSON, in type order then name order.
func render(t *testing.T, r Resources) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, typ := range TypeOrder {
		for _, name := range r.Names(typ) {
			js, err := protojson.Marshal(r[typ][name])
			if err != nil {
				t.Fatalf("marshal %s %s: %v", typ, name, err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, compact(t, js), "", "  "); err != nil {
				t.Fatal(err)
			}
			buf.WriteString("# " + strings.TrimPrefix(typ, resource.APITypePrefix) + " " + name + "\n")
			buf.Write(pretty.Bytes())
			buf.WriteString("\n")
		}
	}
	return buf.Bytes()
}

// compact strips protojson's deliberately unstable whitespace.
func compact(t *testing.T, js []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, js); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden (run with -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the built resources; run `go test ./xds/envoybuild -update` and review the diff\n--- got ---\n%s", path, got)
	}
}

func TestAll_MatchesGolden(t *testing.T) {
	golden(t, "resources.golden", render(t, testParams().All(fixtureTenants())))
}

func TestAll_DefaultConfigMatchesGolden(t *testing.T) {
	cfg := config.Default()
	golden(t, "default.golden", render(t, ParamsFrom(&cfg).All(fixtureTenants()[2:3])))
}

func TestAll_EveryResourcePassesDeepValidation(t *testing.T) {
	r := testParams().All(fixtureTenants())
	n := 0
	for _, typ := range TypeOrder {
		for _, name := range r.Names(typ) {
			if err := envoyvalidate.ValidateMessage(r[typ][name]); err != nil {
				t.Errorf("%s %s: %v", typ, name, err)
			}
			n++
		}
	}
	if n < 10 {
		t.Fatalf("validated only %d resources; the fixture should yield more", n)
	}
}

func TestAll_ReferencesResolve(t *testing.T) {
	if err := CheckReferences(testParams().All(fixtureTenants())); err != nil {
		t.Fatal(err)
	}
}

func TestCheckReferences_FindsDanglingReferences(t *testing.T) {
	p := testParams()
	tests := []struct {
		name   string
		break_ func(Resources)
		want   string
	}{
		{"route to a missing cluster", func(r Resources) { delete(r[resource.ClusterType], "tenant-acme") }, "missing cluster tenant-acme"},
		{"scope to a missing route", func(r Resources) { delete(r[resource.RouteType], "tenant-initech") }, "missing route configuration tenant-initech"},
		{"eds cluster without endpoints", func(r Resources) { delete(r[resource.EndpointType], "tenant-acme") }, "EDS cluster tenant-acme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.All(fixtureTenants())
			tt.break_(r)
			err := CheckReferences(r)
			if !errors.Is(err, ErrDangling) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a dangling reference naming %q", err, tt.want)
			}
		})
	}
}

func TestTenant_OnlyActiveTenantsGetRoutes(t *testing.T) {
	p := testParams()
	for _, tn := range fixtureTenants() {
		_, ok := p.Tenant(tn)
		if ok != (tn.Status == tenant.Active) {
			t.Errorf("tenant %s in status %s: built = %v", tn.Slug, tn.Status, ok)
		}
	}
}

func TestTenant_RoutesNameTheTenantToAuthzAndRateLimit(t *testing.T) {
	p := testParams()
	tn := fixtureTenants()[2]
	res, _ := p.Tenant(tn)
	if got := res.Scope.GetKey().GetFragments()[0].GetStringKey(); got != "initech.tenants.example.com" {
		t.Errorf("scope key = %q", got)
	}
	for _, rt := range res.Route.GetVirtualHosts()[0].GetRoutes() {
		var per extauthzv3.ExtAuthzPerRoute
		if err := rt.GetTypedPerFilterConfig()[filterExtAuthz].UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		ext := per.GetCheckSettings().GetContextExtensions()
		want := map[string]string{ContextTenantID: tn.ID}
		if rt.GetName() == "reports" {
			want[ContextPlans] = "professional,enterprise"
		}
		if !maps.Equal(ext, want) {
			t.Errorf("route %s context extensions = %v, want %v", rt.GetName(), ext, want)
		}
		if plan := rt.GetMetadata().GetFilterMetadata()[MetadataNamespace].GetFields()["tenant_plan"].GetStringValue(); plan != "free" {
			t.Errorf("route %s metadata plan = %q", rt.GetName(), plan)
		}
		actions := rt.GetRoute().GetRateLimits()[0].GetActions()
		if actions[0].GetRequestHeaders().GetDescriptorKey() != DescriptorTenantID ||
			actions[1].GetGenericKey().GetDescriptorKey() != DescriptorEndpoint ||
			actions[1].GetGenericKey().GetDescriptorValue() != rt.GetName() {
			t.Errorf("route %s rate-limit actions = %v", rt.GetName(), actions)
		}
		if rt.GetRoute().GetCluster() != PoolCluster {
			t.Errorf("pool tenant routes to %s", rt.GetRoute().GetCluster())
		}
	}
}

func TestTenant_OwnUpstreamUsesEDSForIPsAndDNSForNames(t *testing.T) {
	p := testParams()
	acme, _ := p.Tenant(fixtureTenants()[0])
	if acme.Cluster.GetType() != clusterv3.Cluster_EDS || acme.Endpoints == nil || acme.RouteCluster != "tenant-acme" {
		t.Errorf("acme: type %v endpoints %v", acme.Cluster.GetType(), acme.Endpoints)
	}
	globex, _ := p.Tenant(fixtureTenants()[1])
	if globex.Cluster.GetType() != clusterv3.Cluster_STRICT_DNS || globex.Endpoints != nil || globex.Cluster.GetLoadAssignment() == nil {
		t.Errorf("globex: type %v", globex.Cluster.GetType())
	}
}

func TestListener_ExtAuthzFailsClosedAndFilterOrder(t *testing.T) {
	var hcm hcmv3.HttpConnectionManager
	if err := testParams().Listener().GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	if want := []string{filterExtAuthz, filterRateLimit, filterRouter}; !slices.Equal(names, want) {
		t.Fatalf("filters = %v, want %v", names, want)
	}
	var authz extauthzv3.ExtAuthz
	if err := hcm.GetHttpFilters()[0].GetTypedConfig().UnmarshalTo(&authz); err != nil {
		t.Fatal(err)
	}
	if authz.GetFailureModeAllow() || authz.GetStatusOnError().GetCode() != 503 || !authz.GetValidateMutations() {
		t.Errorf("ext_authz not fail-closed: %v", &authz)
	}
	// The credentials, the trace context, and every client-sent trusted-header name (so the
	// service can remove spoofed ones) reach ext_authz; nothing else does.
	allowed := authz.GetAllowedHeaders()
	for _, h := range []string{"authorization", "cookie", "x-tenant-id", "x-tenant-role", "x-auth-subject", "traceparent"} {
		if !matchesAny(allowed, h) {
			t.Errorf("header %q is not sent to ext_authz: %v", h, allowed)
		}
	}
	for _, h := range []string{"x-forwarded-for", "content-type", "x-api-key"} {
		if matchesAny(allowed, h) {
			t.Errorf("header %q is sent to ext_authz: %v", h, allowed)
		}
	}
}

func matchesAny(l *matcherv3.ListStringMatcher, header string) bool {
	for _, m := range l.GetPatterns() {
		if m.GetExact() == header || (m.GetPrefix() != "" && strings.HasPrefix(header, m.GetPrefix())) {
			return true
		}
	}
	return false
}

func TestBootstrap_MatchesGoldenAndPassesDeepValidation(t *testing.T) {
	for _, role := range []Role{Gateway, Sidecar} {
		t.Run(string(role), func(t *testing.T) {
			b, err := Bootstrap(BootstrapParams{Role: role, NodeID: "envoy-1", Cluster: "edge",
				XDSAddress: "tenantgate-xds.tenantgate.svc:18000", AdminPort: 9901, Delta: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := envoyvalidate.ValidateMessage(b); err != nil {
				t.Fatal(err)
			}
			js, err := protojson.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, compact(t, js), "", "  "); err != nil {
				t.Fatal(err)
			}
			golden(t, "bootstrap-"+string(role)+".golden", append(pretty.Bytes(), '\n'))
		})
	}
}
