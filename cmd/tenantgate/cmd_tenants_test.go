package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantgate/tenantgate/extauthz"
	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/api"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

// tenantsAPI serves the real provisioner API (pool tenants; no Kubernetes, DNS or email) and returns
// its URL and an admin token.
func tenantsAPI(t *testing.T) (string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := testenv.Database(t)
	cc, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := saga.Migrate(ctx, cc); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.NewMemory()
	cat, err := steps.NewCatalog(steps.Deps{Registry: reg, State: db, Shared: db, BaseDomain: "tenants.test",
		Databases: config.TenantDatabases{PoolSchema: "tenant_pool", NamePrefix: "t_"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := provisioner.New(provisioner.Options{Registry: reg, State: db, Catalog: cat,
		KnownPlan: func(p string) bool { return p == "free" },
		Saga:      saga.Options{PollInterval: 20 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	secret := "an-hmac-secret-of-at-least-thirty-two-bytes!"
	cfg := config.Default()
	cfg.Authz.Issuers = []config.Issuer{{Issuer: "https://admin.test", Audiences: []string{"admin"}, Algorithms: []string{"HS256"}, HMACSecret: config.Secret(secret)}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := extauthz.NewVerifier(cfg.Authz)
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(p, api.ScopeVerifier{Tokens: v, Scope: "tenantgate:admin"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); cancel(); <-done; db.Close() })
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://admin.test", "aud": "admin", "sub": "ops",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "scope": "tenantgate:admin"}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, tok
}

func runTenants(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"tenants"}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestTenantsCLI_CreateShowsProgressThenManagesTheTenant(t *testing.T) {
	url, tok := tenantsAPI(t)
	t.Setenv("TENANTGATE_ADMIN_TOKEN", tok)
	out, err := runTenants(t, "--server", url, "create", "--name", "Acme Corp", "--plan", "free", "--model", "pool", "--admin-email", "o@acme.example")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	for _, want := range []string{"(acme-corp): pending", "doing registry-provisioning", "create saga done", "status:    active"} {
		if !strings.Contains(out, want) {
			t.Errorf("create output lacks %q:\n%s", want, out)
		}
	}
	id := strings.Fields(strings.SplitN(out, "\n", 2)[0])[1]

	out, err = runTenants(t, "--server", url, "list", "--status", "active")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "acme-corp") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err = runTenants(t, "--server", url, "suspend", id); err != nil || !strings.Contains(out, "suspended") {
		t.Fatalf("suspend: %v\n%s", err, out)
	}
	if out, err = runTenants(t, "--server", url, "resume", id); err != nil || !strings.Contains(out, "active") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if out, err = runTenants(t, "--server", url, "retry", id); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("retry of an active tenant: %v\n%s", err, out)
	}
	if out, err = runTenants(t, "--server", url, "delete", id); err != nil || !strings.Contains(out, "delete saga done") || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err = runTenants(t, "--server", url, "-o", "json", "get", id); err != nil || !strings.Contains(out, `"status":"deleted"`) {
		t.Fatalf("get: %v\n%s", err, out)
	}
	_, err = runTenants(t, "--server", url, "create", "--name", "X", "--plan", "gold", "--admin-email", "o@x.example")
	if err == nil || !strings.Contains(err.Error(), "plan") {
		t.Fatalf("bad plan: %v", err)
	}
	t.Setenv("TENANTGATE_ADMIN_TOKEN", "")
	if _, err = runTenants(t, "--server", url, "list"); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("no token: %v", err)
	}
}
