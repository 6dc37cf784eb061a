package extauthz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

const (
	baseDomain = "tenants.example.com"
	audience   = "https://api.example.com"
)

// The tenants every test knows.
var (
	acme    = tenant.Tenant{ID: "3f1c2a9e-6b7d-4c1e-9a2f-0d5e8b7c6a41", Slug: "acme", Name: "Acme", Plan: "enterprise", Model: tenant.Silo, Status: tenant.Active}
	globex  = tenant.Tenant{ID: "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", Slug: "globex", Plan: "free", Model: tenant.Pool, Status: tenant.Active}
	frozen  = tenant.Tenant{ID: "11111111-2222-4333-8444-555555555555", Slug: "frozen", Plan: "free", Model: tenant.Pool, Status: tenant.Suspended}
	gone    = tenant.Tenant{ID: "22222222-3333-4444-8555-666666666666", Slug: "gone-co", Plan: "free", Model: tenant.Pool, Status: tenant.Deleted}
	pending = tenant.Tenant{ID: "33333333-4444-4555-8666-777777777777", Slug: "pending-co", Plan: "free", Model: tenant.Bridge, Status: tenant.Pending}
	// never is a well-formed id that no tenant holds.
	never = "44444444-5555-4666-8777-888888888888"
)

// staticTenants is a ready snapshot of fixed tenants.
type staticTenants struct {
	snap  *snapshot.Snapshot
	ready bool
}

func (s staticTenants) Load() *snapshot.Snapshot { return s.snap }
func (s staticTenants) IsReady() bool            { return s.ready }

func allTenants() staticTenants {
	return staticTenants{snap: snapshot.New([]tenant.Tenant{acme, globex, frozen, gone, pending}, 1), ready: true}
}

// signer is one signing key with its kid and alg.
type signer struct {
	kid  string
	alg  string
	priv crypto.Signer
}

var (
	rsaOnce   sync.Once
	rsaKeys   [3]*rsa.PrivateKey
	rsaSmall  *rsa.PrivateKey
	rsaKeyErr error
)

// rsaKey returns one of a few RSA-2048 keys made once per test binary (generation is slow).
func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	rsaOnce.Do(func() {
		for n := range rsaKeys {
			if rsaKeys[n], rsaKeyErr = rsa.GenerateKey(rand.Reader, 2048); rsaKeyErr != nil {
				return
			}
		}
		rsaSmall, rsaKeyErr = rsa.GenerateKey(rand.Reader, 1024)
	})
	if rsaKeyErr != nil {
		t.Fatal(rsaKeyErr)
	}
	return rsaKeys[i]
}

func newRSASigner(t testing.TB, kid string, i int) signer {
	return signer{kid: kid, alg: "RS256", priv: rsaKey(t, i)}
}

func newECSigner(t testing.TB, kid string, curve elliptic.Curve, alg string) signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: alg, priv: k}
}

func newEdSigner(t testing.TB, kid string) signer {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: "EdDSA", priv: k}
}

// jwk is the public JWK of the signer; withAlg sets its alg member.
func (s signer) jwk(t testing.TB, withAlg bool) jwkset.JWKMarshal {
	t.Helper()
	meta := jwkset.JWKMetadataOptions{KID: s.kid, USE: jwkset.UseSig}
	if withAlg {
		meta.ALG = jwkset.ALG(s.alg)
	}
	j, err := jwkset.NewJWKFromKey(s.priv.Public(), jwkset.JWKOptions{Metadata: meta})
	if err != nil {
		t.Fatal(err)
	}
	return j.Marshal()
}

func jwksOf(t testing.TB, signers ...signer) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	set.Keys = []jwkset.JWKMarshal{}
	for _, s := range signers {
		set.Keys = append(set.Keys, s.jwk(t, true))
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sign makes a token with the given header members and claims, signed by s with its alg.
func (s signer) sign(t testing.TB, hdr map[string]any, claims map[string]any) string {
	t.Helper()
	method := jwt.GetSigningMethod(s.alg)
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	if s.kid != "" {
		tok.Header["kid"] = s.kid
	}
	for k, v := range hdr {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	out, err := tok.SignedString(s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwksServer is a real HTTPS JWKS endpoint whose answers a test controls.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	doc     []byte
	status  int
	delay   time.Duration
	fetches atomic.Int64
}

func newJWKSServer(t testing.TB, doc []byte) *jwksServer {
	t.Helper()
	js := &jwksServer{doc: doc, status: http.StatusOK}
	js.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		js.mu.Lock()
		doc, status, delay := js.doc, js.status, js.delay
		js.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(doc)
	}))
	t.Cleanup(js.Close)
	return js
}

func (js *jwksServer) set(doc []byte, status int, delay time.Duration) {
	js.mu.Lock()
	defer js.mu.Unlock()
	js.doc, js.status, js.delay = doc, status, delay
}

// issuerFor is an issuer fetching its keys from js.
func issuerFor(js *jwksServer, name string) config.Issuer {
	return config.Issuer{
		Issuer:             name,
		Audiences:          []string{audience},
		Algorithms:         []string{"RS256", "ES256", "EdDSA"},
		JWKSURL:            js.URL + "/jwks.json",
		RefreshInterval:    config.Duration(time.Hour),
		UnknownKIDCooldown: config.Duration(200 * time.Millisecond),
		FetchTimeout:       config.Duration(2 * time.Second),
	}
}

func authzConfig(issuers ...config.Issuer) config.Authz {
	cfg := config.Default().Authz
	cfg.Issuers = issuers
	return cfg
}

// startServer builds a server, runs its key loops until the test ends, and waits for every
// issuer's keys (unless wantReady is false).
func startServer(t testing.TB, cfg config.Authz, tenants Tenants, client *http.Client, opts ...Option) *Server {
	t.Helper()
	if err := validAuthz(cfg); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	opts = append([]Option{WithHTTPClient(client), WithRegisterer(prometheus.NewRegistry()), WithLogger(slog.New(slog.DiscardHandler))}, opts...)
	s, err := NewServer(cfg, baseDomain, tenants, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return s
}

func validAuthz(a config.Authz) error {
	c := config.Default()
	c.Authz = a
	return c.Validate()
}

func waitReady(t testing.TB, s *Server) {
	t.Helper()
	eventually(t, 5*time.Second, func() bool { return s.Ready() == nil })
}

func eventually(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkReq is an Envoy CheckRequest with the given headers (the joined form), host and context
// extensions.
func checkReq(host string, headers map[string]string, ext map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/v1/things", Host: host, Scheme: "https", Protocol: "HTTP/2", Headers: headers,
		}},
		ContextExtensions: ext,
	}}
}

// rawReq is a CheckRequest with the header_map form (one entry per header line).
func rawReq(host string, lines ...[2]string) *authv3.CheckRequest {
	hm := &corev3.HeaderMap{}
	for _, l := range lines {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: l[0], RawValue: []byte(l[1])})
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/", Host: host, HeaderMap: hm,
		}},
	}}
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

// claimsFor are valid claims for a tenant id from iss, valid for an hour from now.
func claimsFor(iss, tenantID string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "aud": audience, "sub": "user-1", "tenant_id": tenantID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func check(t testing.TB, s *Server, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := s.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check returned an RPC error: %v", err)
	}
	return resp
}

// reasonCount returns how many checks ended with r.
func reasonTotal(s *Server, r Reason) float64 { return testutil.ToFloat64(s.metrics.checks[r]) }

// assertDenied checks a denial: the exact HTTP status, a problem+json body that does not echo
// token, the Bearer challenge on 401, and no header that could reach the upstream.
func assertDenied(t testing.TB, resp *authv3.CheckResponse, status int, token string) {
	t.Helper()
	if resp.GetOkResponse() != nil {
		t.Fatalf("want denial %d, got an OK response with headers %v", status, resp.GetOkResponse().GetHeaders())
	}
	denied := resp.GetDeniedResponse()
	if status == http.StatusServiceUnavailable {
		denied = resp.GetErrorResponse()
	}
	if denied == nil {
		t.Fatalf("want denial %d, got %v", status, resp)
	}
	if got := int(denied.GetStatus().GetCode()); got != status {
		t.Fatalf("status = %d, want %d (body %s)", got, status, denied.GetBody())
	}
	if resp.GetStatus().GetCode() == 0 {
		t.Fatal("a denial carries a non-OK gRPC status code")
	}
	if resp.GetDynamicMetadata() != nil {
		t.Fatal("a denial carries no dynamic metadata")
	}
	var hasChallenge bool
	for _, h := range denied.GetHeaders() {
		k := strings.ToLower(h.GetHeader().GetKey())
		if strings.HasPrefix(k, "x-tenant-") || k == "x-auth-subject" {
			t.Fatalf("denial stamps %s", k)
		}
		if k == "www-authenticate" {
			hasChallenge = true
			if !strings.HasPrefix(h.GetHeader().GetValue(), "Bearer ") {
				t.Fatalf("challenge %q is not a Bearer challenge", h.GetHeader().GetValue())
			}
		}
	}
	if (status == http.StatusUnauthorized) != hasChallenge {
		t.Fatalf("status %d with WWW-Authenticate = %v", status, hasChallenge)
	}
	var body problem
	if err := json.Unmarshal([]byte(denied.GetBody()), &body); err != nil || body.Status != status {
		t.Fatalf("body %q is not a problem document with status %d", denied.GetBody(), status)
	}
	if len(token) > 8 && strings.Contains(denied.GetBody(), token) {
		t.Fatal("denial echoes the token")
	}
}

// assertAllowed checks an allow for tenant tn: every stamped header in the overwrite form, no
// stamped header in headers_to_remove, and the same facts as dynamic metadata.
func assertAllowed(t testing.TB, resp *authv3.CheckResponse, tn tenant.Tenant, subject string) *authv3.OkHttpResponse {
	t.Helper()
	ok := resp.GetOkResponse()
	if ok == nil || resp.GetStatus().GetCode() != 0 {
		body := ""
		if d := resp.GetDeniedResponse(); d != nil {
			body = d.GetBody()
		}
		t.Fatalf("want allow for %s, got status %d %s", tn.Slug, resp.GetStatus().GetCode(), body)
	}
	want := map[string]string{
		"x-tenant-id": tn.ID, "x-tenant-slug": tn.Slug, "x-tenant-plan": tn.Plan,
		"x-tenant-model": string(tn.Model), "x-auth-subject": subject,
	}
	got := map[string]string{}
	for _, h := range ok.GetHeaders() {
		//lint:ignore SA1019 the deprecated field is part of the required overwrite form
		if h.GetAppend() == nil || h.GetAppend().GetValue() ||
			h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Fatalf("header %s not in the overwrite form: %v", h.GetHeader().GetKey(), h)
		}
		if len(h.GetHeader().GetRawValue()) > 0 {
			t.Fatalf("header %s uses raw_value", h.GetHeader().GetKey())
		}
		got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("header %s = %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("stamped %v, want exactly %v", got, want)
	}
	for _, r := range ok.GetHeadersToRemove() {
		if _, stamped := want[r]; stamped {
			t.Fatalf("stamped header %s is also in headers_to_remove", r)
		}
	}
	md := resp.GetDynamicMetadata().GetFields()[MetadataNamespace].GetStructValue().GetFields()
	for k, v := range map[string]string{"tenant_id": tn.ID, "tenant_slug": tn.Slug, "tenant_plan": tn.Plan, "tenant_model": string(tn.Model), "auth_subject": subject} {
		if md[k].GetStringValue() != v {
			t.Fatalf("dynamic metadata %s = %q, want %q", k, md[k].GetStringValue(), v)
		}
	}
	return ok
}
