package envoybuild_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/tenantgate/tenantgate/extauthz"
	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// fixedTenants is a ready snapshot of a fixed set of tenants.
type fixedTenants struct{ snap *snapshot.Snapshot }

func (f fixedTenants) Load() *snapshot.Snapshot { return f.snap }
func (f fixedTenants) IsReady() bool            { return true }

// TestRouteContextExtensions_CheckHonoursThem builds tenant routes with envoybuild and sends the
// context extensions Envoy would send for them to the real Check service: the route's own tenant
// passes, any other tenant is denied even on a host that carries no host binding.
func TestRouteContextExtensions_CheckHonoursThem(t *testing.T) {
	acme := tenant.Tenant{ID: "3f1c2a9e-6b7d-4c1e-9a2f-0d5e8b7c6a41", Slug: "acme", Name: "Acme", Plan: "enterprise", Model: tenant.Pool, Status: tenant.Active}
	globex := tenant.Tenant{ID: "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", Slug: "globex", Name: "Globex", Plan: "free", Model: tenant.Pool, Status: tenant.Active}

	dir := t.TempDir()
	key, err := extauthz.GenerateDevKey()
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(dir, "jwks.json")
	if err := key.Save(filepath.Join(dir, "key.json"), jwks); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.BaseDomain = "tenants.example.com"
	cfg.Authz.Issuers = []config.Issuer{{Issuer: extauthz.DevIssuer, Audiences: []string{"tenantgate"}, JWKSFile: jwks}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := extauthz.NewServer(cfg.Authz, cfg.BaseDomain, fixedTenants{snapshot.New([]tenant.Tenant{acme, globex}, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(5 * time.Second); srv.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("authz never ready: %v", srv.Ready())
		}
	}

	token := func(tn tenant.Tenant) string {
		tok, err := key.Mint(extauthz.DevToken{Audience: "tenantgate", Subject: "u", Tenant: tn.ID, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cfg.XDS.Routes = []config.XDSRoute{{Name: "admin", Prefix: "/admin", Plans: []string{"enterprise"}}, {Name: "default", Prefix: "/"}}
	params := envoybuild.ParamsFrom(&cfg)
	routeExtensions := func(tn tenant.Tenant, route string) map[string]string {
		res, ok := params.Tenant(&tn)
		if !ok {
			t.Fatalf("no resources for %s", tn.Slug)
		}
		var rt *routev3.Route
		for _, r := range res.Route.GetVirtualHosts()[0].GetRoutes() {
			if r.GetName() == route {
				rt = r
			}
		}
		var per extauthzv3.ExtAuthzPerRoute
		if err := rt.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&per); err != nil {
			t.Fatal(err)
		}
		return per.GetCheckSettings().GetContextExtensions()
	}

	tests := []struct {
		name  string
		route tenant.Tenant // whose route the request matched
		named string        // which route of it
		token tenant.Tenant
		host  string
		allow bool
	}{
		{"own tenant on its host is allowed", acme, "default", acme, "acme.tenants.example.com", true},
		{"own tenant on an unbound host is allowed", acme, "default", acme, "api.example.net", true},
		{"other tenant on an unbound host is denied by the route's tenant", acme, "default", globex, "api.example.net", false},
		{"other tenant on the route's host is denied", acme, "default", globex, "acme.tenants.example.com", false},
		{"a route open to the tenant's plan is allowed", acme, "admin", acme, "acme.tenants.example.com", true},
		{"a route closed to the tenant's plan is denied", globex, "admin", globex, "globex.tenants.example.com", false},
		{"every plan may use a route without plans", globex, "default", globex, "globex.tenants.example.com", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
					Method: "GET", Path: "/", Host: tt.host, Scheme: "https", Protocol: "HTTP/1.1",
					Headers: map[string]string{"authorization": "Bearer " + token(tt.token)},
				}},
				ContextExtensions: routeExtensions(tt.route, tt.named),
			}}
			resp, err := srv.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK
			if allowed != tt.allow {
				t.Fatalf("allowed = %v, want %v (response %v)", allowed, tt.allow, resp)
			}
			if allowed {
				if got := stamped(resp.GetOkResponse().GetHeaders(), "x-tenant-id"); got != tt.token.ID {
					t.Errorf("x-tenant-id = %q, want %q", got, tt.token.ID)
				}
			}
		})
	}
}

func stamped(headers []*corev3.HeaderValueOption, name string) string {
	for _, h := range headers {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
