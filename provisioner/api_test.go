package provisioner_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tenantgate/tenantgate/extauthz"
	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/api"
	"github.com/tenantgate/tenantgate/provisioner/kube"
)

const (
	adminIssuer   = "https://admin.tenants.test"
	adminAudience = "tenantgate-admin"
	adminSecret   = "an-hmac-secret-of-at-least-thirty-two-bytes!"
)

// apiServer serves the API over a real provisioner, with admin tokens checked by ext_authz's verifier.
type apiServer struct {
	*httptest.Server
	env *env
}

func newAPIServer(t *testing.T) *apiServer {
	t.Helper()
	e := newEnv(t)
	p := e.start(t, provOpts{})
	cfg := config.Default()
	cfg.Authz.Issuers = []config.Issuer{{Issuer: adminIssuer, Audiences: []string{adminAudience},
		Algorithms: []string{"HS256"}, HMACSecret: config.Secret(adminSecret)}}
	cfg.Provisioner.Admin = config.ProvisionerAdmin{Issuer: adminIssuer, Scope: "tenantgate:admin"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	v, err := extauthz.NewVerifier(cfg.Authz)
	if err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(p, api.ScopeVerifier{Tokens: v, Issuer: adminIssuer, Scope: "tenantgate:admin"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiServer{Server: srv, env: e}
}

func token(t *testing.T, scope string, secret string) string {
	t.Helper()
	claims := jwt.MapClaims{"iss": adminIssuer, "aud": adminAudience, "sub": "ops@tenants.test",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "scope": scope}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type response struct {
	status int
	header http.Header
	body   map[string]any
}

func (s *apiServer) do(t *testing.T, tok, method, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := response{status: res.StatusCode, header: res.Header}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out.body); err != nil {
			t.Fatalf("%s %s: body is not JSON: %q", method, path, raw)
		}
	}
	return out
}

func TestAPI_AdminTokenRequired(t *testing.T) {
	s := newAPIServer(t)
	cases := []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"garbage", "not-a-jwt", http.StatusUnauthorized},
		{"wrong signature", token(t, "tenantgate:admin", "another-secret-that-is-long-enough-to-use"), http.StatusUnauthorized},
		{"no admin scope", token(t, "tenants:read", adminSecret), http.StatusForbidden},
		{"admin", token(t, "openid tenantgate:admin", adminSecret), http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(t, c.token, "GET", "/v1/tenants", "")
			if r.status != c.want {
				t.Fatalf("status %d, want %d (%v)", r.status, c.want, r.body)
			}
			if c.want != http.StatusOK && r.header.Get("Content-Type") != api.ContentTypeProblem {
				t.Errorf("content type %q", r.header.Get("Content-Type"))
			}
		})
	}
	// Unknown paths and methods are refused without a token too, before anything is revealed.
	if r := s.do(t, "", "DELETE", "/v1/tenants", ""); r.status != http.StatusUnauthorized {
		t.Errorf("DELETE /v1/tenants without token: %d", r.status)
	}
	admin := token(t, "tenantgate:admin", adminSecret)
	if r := s.do(t, admin, "DELETE", "/v1/tenants", ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, POST" {
		t.Errorf("DELETE /v1/tenants: %d allow %q", r.status, r.header.Get("Allow"))
	}
	if r := s.do(t, admin, "GET", "/v1/nothing", ""); r.status != http.StatusNotFound {
		t.Errorf("GET /v1/nothing: %d", r.status)
	}
}

func TestAPI_ValidationErrorsNameTheField(t *testing.T) {
	s := newAPIServer(t)
	admin := token(t, "tenantgate:admin", adminSecret)
	cases := []struct {
		name, body string
		status     int
		field      string
	}{
		{"not json", `{"name":`, 400, "body"},
		{"not an object", `["Acme"]`, 400, "body"},
		{"unknown field", `{"name":"Acme","plan":"free","model":"pool","admin_email":"a@b.example","colour":"red"}`, 400, "colour"},
		{"wrong type", `{"name":42}`, 400, "name"},
		{"no name", `{"plan":"free","model":"pool","admin_email":"a@b.example"}`, 422, "name"},
		{"unknown plan", `{"name":"Acme","plan":"gold","model":"pool","admin_email":"a@b.example"}`, 422, "plan"},
		{"unknown model", `{"name":"Acme","plan":"free","model":"vm","admin_email":"a@b.example"}`, 422, "model"},
		{"bad email", `{"name":"Acme","plan":"free","model":"pool","admin_email":"Acme <a@b.example>"}`, 422, "admin_email"},
		{"bad slug", `{"name":"Acme","slug":"Acme_Co","plan":"free","model":"pool","admin_email":"a@b.example"}`, 422, "slug"},
		{"reserved slug", `{"name":"Acme","slug":"admin","plan":"free","model":"pool","admin_email":"a@b.example"}`, 422, "slug"},
		{"derived slug too short", `{"name":"A!","plan":"free","model":"pool","admin_email":"a@b.example"}`, 422, "slug"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := s.do(t, admin, "POST", "/v1/tenants", c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %v", r.status, c.status, r.body)
			}
			if r.header.Get("Content-Type") != api.ContentTypeProblem {
				t.Errorf("content type %q", r.header.Get("Content-Type"))
			}
			params, _ := r.body["invalid-params"].([]any)
			if len(params) != 1 || params[0].(map[string]any)["name"] != c.field {
				t.Errorf("invalid-params %v, want field %q", r.body["invalid-params"], c.field)
			}
		})
	}
	r := s.do(t, admin, "GET", "/v1/tenants?limit=0", "")
	if r.status != 422 || !strings.Contains(r.body["detail"].(string), "limit") {
		t.Errorf("limit=0: %d %v", r.status, r.body)
	}
	r = s.do(t, admin, "GET", "/v1/tenants?model=vm", "")
	if r.status != 422 {
		t.Errorf("model=vm: %d %v", r.status, r.body)
	}
}

func TestAPI_IdempotencyKey(t *testing.T) {
	s := newAPIServer(t)
	admin := token(t, "tenantgate:admin", adminSecret)
	body := `{"name":"Idem Co","plan":"starter","model":"pool","admin_email":"owner@idem.example"}`
	first := s.do(t, admin, "POST", "/v1/tenants", body, "Idempotency-Key", "k-1")
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %v", first.status, first.body)
	}
	id := first.body["id"].(string)
	if first.header.Get("Location") != "/v1/tenants/"+id || first.body["slug"] != "idem-co" || first.body["status"] != "pending" {
		t.Fatalf("first: location %q body %v", first.header.Get("Location"), first.body)
	}
	again := s.do(t, admin, "POST", "/v1/tenants", body, "Idempotency-Key", "k-1")
	if again.status != http.StatusAccepted || again.body["id"] != id || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("same key, same body: %d %v", again.status, again.body)
	}
	other := s.do(t, admin, "POST", "/v1/tenants", strings.Replace(body, "starter", "free", 1), "Idempotency-Key", "k-1")
	if other.status != http.StatusConflict || other.header.Get("Content-Type") != api.ContentTypeProblem {
		t.Fatalf("same key, other body: %d %v", other.status, other.body)
	}
	// Without a key, the same body is a second request: its slug is taken.
	dup := s.do(t, admin, "POST", "/v1/tenants", body)
	if dup.status != http.StatusConflict {
		t.Fatalf("no key, same body: %d %v", dup.status, dup.body)
	}
	list := s.do(t, admin, "GET", "/v1/tenants", "")
	if n := len(list.body["tenants"].([]any)); n != 1 {
		t.Fatalf("%d tenants, want 1", n)
	}
}

func TestAPI_StatusTransitions(t *testing.T) {
	s := newAPIServer(t)
	admin := token(t, "tenantgate:admin", adminSecret)
	r := s.do(t, admin, "POST", "/v1/tenants", `{"name":"Flow","plan":"starter","model":"namespace","admin_email":"owner@flow.example"}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("create: %d %v", r.status, r.body)
	}
	id := r.body["id"].(string)
	path := "/v1/tenants/" + id
	waitStatus(t, s, admin, path, tenant.Active)

	steps := []struct {
		method, path, body string
		status             int
		tenantStatus       tenant.Status
	}{
		{"POST", path + "/resume", "", 200, tenant.Active}, // already where it was asked to be
		{"POST", path + "/retry", "", 409, ""},             // nothing to retry
		{"POST", path + "/suspend", "", 200, tenant.Suspended},
		{"POST", path + "/suspend", "", 200, tenant.Suspended}, // again: no change
		{"PATCH", path, `{"plan":"gold"}`, 422, ""},
		{"PATCH", path, `{"name":"x"}`, 400, ""},
		{"PATCH", path, `{"plan":"professional"}`, 200, tenant.Suspended},
		{"POST", path + "/resume", "", 200, tenant.Active},
		{"DELETE", path, "", 202, tenant.Deleting},
		{"POST", path + "/suspend", "", 409, ""},
		{"POST", path + "/resume", "", 409, ""},
		{"PATCH", path, `{"plan":"free"}`, 409, ""},
	}
	for _, st := range steps {
		r := s.do(t, admin, st.method, st.path, st.body)
		if r.status != st.status {
			t.Fatalf("%s %s %s: %d, want %d: %v", st.method, st.path, st.body, r.status, st.status, r.body)
		}
		if st.tenantStatus != "" && r.body["status"] != string(st.tenantStatus) {
			t.Fatalf("%s %s: status %v, want %s", st.method, st.path, r.body["status"], st.tenantStatus)
		}
		if st.method == "PATCH" && r.status == 200 {
			waitStatus(t, s, admin, path, st.tenantStatus) // the plan's quotas are applied by a saga
			quota := s.env.kube.Get(kube.Ref{APIVersion: "v1", Kind: "ResourceQuota", Namespace: "tenant-flow", Name: kube.QuotaTotal})
			if quota == nil || quota.GetLabels()[kube.LabelPlan] != "professional" {
				t.Fatalf("quota after the plan change: %v", quota)
			}
			if pods, _, _ := unstructured.NestedString(quota.Object, "spec", "hard", "pods"); pods != "80" {
				t.Errorf("professional pods quota %q, want 80", pods)
			}
		}
	}
	got := waitStatus(t, s, admin, path, tenant.Deleted)
	if len(s.env.kube.Refs()) != 0 {
		t.Errorf("kubernetes objects left after deletion: %v", s.env.kube.Refs())
	}
	if got["plan"] != "professional" {
		t.Errorf("plan %v", got["plan"])
	}
	// The tombstone stays listed under its status; unknown ids are 404.
	list := s.do(t, admin, "GET", "/v1/tenants?status=deleted", "")
	if n := len(list.body["tenants"].([]any)); n != 1 {
		t.Errorf("deleted tenants listed: %d", n)
	}
	if r := s.do(t, admin, "GET", "/v1/tenants/"+tenant.NewID(), ""); r.status != 404 {
		t.Errorf("unknown id: %d", r.status)
	}
}

func TestAPI_ListFiltersAndPages(t *testing.T) {
	s := newAPIServer(t)
	admin := token(t, "tenantgate:admin", adminSecret)
	for i, plan := range []string{"free", "free", "starter", "free", "starter"} {
		body := `{"name":"Page ` + string(rune('a'+i)) + ` Co","plan":"` + plan + `","model":"pool","admin_email":"o@p.example"}`
		if r := s.do(t, admin, "POST", "/v1/tenants", body); r.status != 202 {
			t.Fatalf("create: %d %v", r.status, r.body)
		}
	}
	var seen []string
	next := ""
	for pages := 0; ; pages++ {
		q := "/v1/tenants?plan=free&limit=2"
		if next != "" {
			q += "&after=" + next
		}
		r := s.do(t, admin, "GET", q, "")
		for _, tn := range r.body["tenants"].([]any) {
			m := tn.(map[string]any)
			if m["plan"] != "free" {
				t.Errorf("plan filter let through %v", m["plan"])
			}
			seen = append(seen, m["id"].(string))
		}
		next, _ = r.body["next"].(string)
		if next == "" {
			break
		}
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != 3 {
		t.Fatalf("free tenants over pages: %d, want 3", len(seen))
	}
}

func waitStatus(t *testing.T, s *apiServer, tok, path string, want tenant.Status) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := s.do(t, tok, "GET", path, "")
		if r.body["status"] == string(want) {
			if sg, ok := r.body["saga"].(map[string]any); !ok || sg["state"] == "running" {
				// the registry is ahead of the saga's last write; look again
			} else {
				return r.body
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %s: %v", path, want, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = context.Background
