package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/golang-jwt/jwt/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// documentedSeries are the series docs/operations.md promises, each with its exact label names.
// The test below makes every part produce them; TestOperationsDoc_NamesEverySeries checks the doc.
var documentedSeries = []struct {
	name   string
	labels []string
}{
	// authz
	{"tenantgate_authz_checks_total", []string{"reason"}},
	{"tenantgate_authz_check_duration_seconds", []string{"decision"}},
	{"tenantgate_authz_token_cache_total", []string{"result"}},
	{"tenantgate_authz_jwks_refreshes_total", []string{"issuer", "result"}},
	{"tenantgate_authz_jwks_keys", []string{"issuer"}},
	{"tenantgate_authz_jwks_age_seconds", []string{"issuer"}},
	{"tenantgate_authz_jwks_refresh_interval_seconds", []string{"issuer"}},
	// ratelimit
	{"tenantgate_ratelimit_requests_total", []string{"code", "plan"}},
	{"tenantgate_ratelimit_request_duration_seconds", []string{"code"}},
	{"tenantgate_ratelimit_decisions_total", []string{"code", "source"}},
	{"tenantgate_ratelimit_store_seconds", nil},
	{"tenantgate_ratelimit_store_breaker_open", nil},
	{"tenantgate_ratelimit_redis_errors_total", []string{"kind"}},
	// xds
	{"tenantgate_xds_streams", []string{"protocol"}},
	{"tenantgate_xds_nacks_total", []string{"type"}},
	{"tenantgate_xds_publish_seconds", nil},
	{"tenantgate_xds_config_version", nil},
	{"tenantgate_xds_last_publish_timestamp_seconds", nil},
	{"tenantgate_xds_resources", []string{"type"}},
	// provisioner
	{"tenantgate_provisioner_sagas_finished_total", []string{"kind", "state"}},
	{"tenantgate_provisioner_step_duration_seconds", []string{"action", "result", "step"}},
	{"tenantgate_provisioner_oldest_saga_age_seconds", nil},
	{"tenantgate_provisioner_saga_scrape_ok", nil},
	// registry
	{"tenantgate_registry_writes_total", []string{"op", "result"}},
	{"tenantgate_registry_watch_changes_total", nil},
	{"tenantgate_registry_change_feed_lag_seconds", nil},
	{"tenantgate_registry_snapshot_tenants", nil},
	{"tenantgate_registry_snapshot_revision", nil},
	{"tenantgate_registry_snapshot_last_change_timestamp_seconds", nil},
}

// Series that exist only in some conditions, documented with their labels too: the rate-limit
// store's failures (after a Redis failure), the saga gauges while a saga is in flight, and the
// opt-in per-tenant view.
var conditionalSeries = []struct {
	name   string
	labels []string
}{
	{"tenantgate_ratelimit_store_failures_total", []string{"failure_mode"}},
	{"tenantgate_provisioner_sagas_in_flight", []string{"kind", "state", "step"}},
	{"tenantgate_provisioner_oldest_saga_age_by_kind_seconds", []string{"kind"}},
	{"tenantgate_top_tenant_requests", []string{"component", "tenant_id"}},
	{"tenantgate_top_tenant_requests_error", []string{"component", "tenant_id"}},
	{"tenantgate_ratelimit_ignored_total", []string{"reason"}},
	{"tenantgate_xds_tenant_changes_rejected_total", nil},
	{"tenantgate_registry_watch_reconnects_total", nil},
}

const (
	obsDomain   = "obs.test"
	obsAudience = "tenantgate"
	obsIssuer   = "https://issuer.obs.test"
	obsKID      = "obs-1"
	// The trace context a client sent through Envoy, as Envoy passes it in the checked headers.
	obsTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	obsParent  = "00f067aa0ba902b7"
)

// observed is one in-process `tenantgate serve` under test.
type observed struct {
	grpc, xds, http, admin string
	key                    ed25519.PrivateKey
	logs                   *lockedBuffer
	spans                  *otlpCollector
	stop                   func() // stops serve and waits for it (spans flushed)
}

// startObserved runs serve with cfgYAML (after the shared issuer and telemetry settings) and waits
// until it is ready.
func startObserved(t *testing.T, cfgYAML string, env map[string]string) *observed {
	t.Helper()
	dir := t.TempDir()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":%q,"x":%q}]}`,
		obsKID, base64.RawURLEncoding.EncodeToString(pub))
	jwksPath := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksPath, []byte(jwks), 0o644); err != nil {
		t.Fatal(err)
	}
	o := &observed{grpc: freeAddr(t), xds: freeAddr(t), http: freeAddr(t), admin: freeAddr(t), key: priv,
		logs: &lockedBuffer{}, spans: startCollector(t)}
	full := fmt.Sprintf(`base_domain: %s
log: { level: debug, format: json }
authz:
  issuers:
    - issuer: %s
      audiences: [%s]
      algorithms: [EdDSA]
      jwks_file: %s
telemetry:
  tracing: { endpoint: %q, insecure: true, sample_ratio: 1 }
`, obsDomain, obsIssuer, obsAudience, jwksPath, o.spans.addr) + cfgYAML
	cfgPath := filepath.Join(dir, "tenantgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(full), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = config.Listen{GRPC: o.grpc, XDS: o.xds, HTTP: o.http, Admin: o.admin}
	log, err := newLogger(cfg.Log, o.logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log) }()
	var once sync.Once
	o.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("serve did not stop within 30s")
			}
		})
	}
	t.Cleanup(func() {
		o.stop()
		if t.Failed() {
			t.Logf("--- serve log ---\n%s", tailLines(o.logs.String(), 60))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + o.admin + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return o
			}
			err = fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		select {
		case err := <-done:
			t.Fatalf("serve ended before ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready within 60s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// token signs a token of the test issuer.
func (o *observed) token(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	now := time.Now()
	base := jwt.MapClaims{"iss": obsIssuer, "aud": obsAudience, "sub": "user-1", "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(10 * time.Minute).Unix()}
	for k, v := range claims {
		base[k] = v
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, base)
	tok.Header["kid"] = obsKID
	s, err := tok.SignedString(o.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (o *observed) conn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// check sends one Check for host with the given request headers.
func (o *observed) check(t *testing.T, host string, headers map[string]string) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(o.conn(t, o.grpc)).Check(ctx, &authv3.CheckRequest{
		Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: host, Path: "/v1/things", Headers: headers,
		}}},
	})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func (o *observed) shouldRateLimit(t *testing.T, tenantID string) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(o.conn(t, o.grpc)).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: "tenantgate",
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{
			{Key: "tenant_id", Value: tenantID}, {Key: "endpoint", Value: "default"},
		}}},
	})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

// scrape reads /metrics into metric families.
func (o *observed) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + o.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// labelNames are the sorted label names of a family's first metric.
func labelNames(m *dto.Metric) []string {
	var names []string
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
	}
	sort.Strings(names)
	return names
}

// sample returns the value of the family's metric whose labels include want (counter, gauge,
// or a histogram's count), and whether there is one.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

// labelValuesHolding lists "family{label}" for every label value that holds one of the needles.
func labelValuesHolding(fams map[string]*dto.MetricFamily, needles ...string) []string {
	var out []string
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, n := range needles {
					if n != "" && strings.Contains(l.GetValue(), n) {
						out = append(out, name+"{"+l.GetName()+"}")
					}
				}
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestMetrics_EveryPartReportsItsDocumentedSeries runs every component on Postgres and Redis,
// exercises each part (a provisioning saga through the API, which is also a registry change; an
// allowed and a denied Check; a ShouldRateLimit; an ADS stream that NACKs), then scrapes /metrics:
// every documented series exists with exactly its documented labels, and no series carries the
// tenant's id or slug. After shutdown, the Check's span reached the OTLP collector as the child of
// the traceparent the request carried, the saga's steps are spans of the saga's trace, and the
// request's log lines carry its request id and tenant id and never the token.
func TestMetrics_EveryPartReportsItsDocumentedSeries(t *testing.T) {
	dbURL := testenv.Database(t)
	rd := testenv.NewRedis(t)
	o := startObserved(t, fmt.Sprintf(`
ratelimit:
  redis: { key_prefix: %q }
xds:
  debounce: 5ms
provisioner:
  poll_interval: 100ms
  backoff: 100ms
  max_backoff: 1s
  admin: { issuer: %s, scope: "tenantgate:admin" }
  kubernetes: { enabled: "false" }
  dns: { provider: record }
`, rd.Prefix, obsIssuer), map[string]string{"TENANTGATE_DATABASE_URL": dbURL, "TENANTGATE_REDIS_URL": rd.URL})

	// A provisioning saga, which ends in a registry change every part sees.
	admin := o.token(t, jwt.MapClaims{"scope": "tenantgate:admin"})
	tenantID, slug, sagaID := provisionTenant(t, o, admin)

	// Checks: one allowed (carrying the client's trace context and Envoy's request id), one denied.
	userToken := o.token(t, jwt.MapClaims{"tenant_id": tenantID})
	resp := o.check(t, slug+"."+obsDomain, map[string]string{
		"authorization": "Bearer " + userToken,
		"traceparent":   "00-" + obsTraceID + "-" + obsParent + "-01",
		"x-request-id":  "obs-request-1",
	})
	if resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("Check of the provisioned tenant denied: %v", resp.GetDeniedResponse())
	}
	_ = o.check(t, slug+"."+obsDomain, map[string]string{"authorization": "Bearer " + userToken}) // cache hit
	if r := o.check(t, slug+"."+obsDomain, nil); r.GetStatus().GetCode() == int32(codes.OK) {
		t.Fatal("Check without a credential allowed")
	}

	// A rate-limit decision counted in Redis.
	if r := o.shouldRateLimit(t, tenantID); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("first request of the hour limited: %v", r)
	}

	// An Envoy on ADS that rejects the clusters it is sent.
	adsNACK(t, o)

	fams := o.scrape(t)
	for _, s := range documentedSeries {
		f, ok := fams[s.name]
		if !ok || len(f.GetMetric()) == 0 {
			t.Errorf("%s: no series", s.name)
			continue
		}
		want := append([]string(nil), s.labels...)
		sort.Strings(want)
		for _, m := range f.GetMetric() {
			if got := labelNames(m); !slices.Equal(got, want) {
				t.Errorf("%s: labels %v, want %v", s.name, got, want)
				break
			}
		}
	}
	// The values say each part did what the test asked of it.
	expect := []struct {
		name   string
		labels map[string]string
	}{
		{"tenantgate_authz_checks_total", map[string]string{"reason": "ok"}},
		{"tenantgate_authz_checks_total", map[string]string{"reason": "missing_credential"}},
		{"tenantgate_authz_check_duration_seconds", map[string]string{"decision": "allowed"}},
		{"tenantgate_authz_check_duration_seconds", map[string]string{"decision": "denied"}},
		{"tenantgate_authz_token_cache_total", map[string]string{"result": "hit"}},
		{"tenantgate_authz_jwks_refreshes_total", map[string]string{"issuer": obsIssuer, "result": "ok"}},
		{"tenantgate_ratelimit_requests_total", map[string]string{"plan": "starter", "code": "ok"}},
		{"tenantgate_ratelimit_decisions_total", map[string]string{"code": "ok", "source": "store"}},
		{"tenantgate_ratelimit_store_seconds", nil},
		{"tenantgate_xds_streams", map[string]string{"protocol": "delta"}},
		{"tenantgate_xds_nacks_total", map[string]string{"type": "Cluster"}},
		{"tenantgate_xds_publish_seconds", nil},
		{"tenantgate_xds_config_version", nil},
		{"tenantgate_provisioner_sagas_finished_total", map[string]string{"kind": "create", "state": "done"}},
		{"tenantgate_provisioner_saga_scrape_ok", nil},
		{"tenantgate_registry_writes_total", map[string]string{"op": "create", "result": "ok"}},
		{"tenantgate_registry_change_feed_lag_seconds", nil},
		{"tenantgate_registry_snapshot_tenants", nil},
	}
	for _, e := range expect {
		if v, ok := sample(fams, e.name, e.labels); !ok || v <= 0 {
			t.Errorf("%s%v = %v (present %v), want > 0", e.name, e.labels, v, ok)
		}
	}
	if leaks := labelValuesHolding(fams, tenantID, slug); len(leaks) > 0 {
		t.Errorf("series carry the tenant's id or slug without the opt-in: %v", leaks)
	}
	if _, ok := fams["tenantgate_top_tenant_requests"]; ok {
		t.Error("the per-tenant view is on without telemetry.metrics.top_tenants")
	}

	o.stop() // flushes the spans
	checkSpan := o.spans.find("envoy.service.auth.v3.Authorization/Check", obsTraceID)
	if checkSpan == nil {
		t.Errorf("no Check span in trace %s; spans: %v", obsTraceID, o.spans.names())
	} else if got := hex.EncodeToString(checkSpan.GetParentSpanId()); got != obsParent {
		t.Errorf("Check span's parent = %s, want the traceparent's %s", got, obsParent)
	}
	sagaTrace := strings.ReplaceAll(sagaID, "-", "")
	if s := o.spans.findPrefix("saga create ", sagaTrace); s == nil {
		t.Errorf("no saga step span in the saga's trace %s; spans: %v", sagaTrace, o.spans.names())
	}
	assertRequestLogLine(t, o.logs.String(), "obs-request-1", tenantID, userToken)
}

// TestMetrics_TenantIDsOnlyWithTheOptIn: with telemetry.metrics.top_tenants set, the busiest
// tenants appear in tenantgate_top_tenant_requests, and in no other series.
func TestMetrics_TenantIDsOnlyWithTheOptIn(t *testing.T) {
	const tenantID = "5d0c7a3e-2f1b-4e8a-9c6d-1a2b3c4d5e6f"
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(tenants, []byte(`tenants:
  - id: `+tenantID+`
    slug: optin
    name: Opt In
    plan: professional
    model: pool
    status: active
`), 0o644); err != nil {
		t.Fatal(err)
	}
	o := startObserved(t, `
components: [authz, ratelimit]
tenants_file: `+tenants+`
telemetry:
  metrics: { top_tenants: 5 }
`, nil)
	userToken := o.token(t, jwt.MapClaims{"tenant_id": tenantID})
	for range 3 {
		if r := o.check(t, "optin."+obsDomain, map[string]string{"authorization": "Bearer " + userToken}); r.GetStatus().GetCode() != int32(codes.OK) {
			t.Fatalf("Check denied: %v", r.GetDeniedResponse())
		}
		o.shouldRateLimit(t, tenantID)
	}
	fams := o.scrape(t)
	for _, component := range []string{"authz", "ratelimit"} {
		if v, ok := sample(fams, "tenantgate_top_tenant_requests", map[string]string{"component": component, "tenant_id": tenantID}); !ok || v != 3 {
			t.Errorf("top tenant %s requests = %v (present %v), want 3", component, v, ok)
		}
	}
	leaks := labelValuesHolding(fams, tenantID, "optin")
	leaks = slices.DeleteFunc(leaks, func(s string) bool { return strings.HasPrefix(s, "tenantgate_top_tenant_requests") })
	if len(leaks) > 0 {
		t.Errorf("series other than the opt-in view carry the tenant: %v", leaks)
	}
	if v, ok := sample(fams, "tenantgate_ratelimit_requests_total", map[string]string{"plan": "professional"}); !ok || v != 3 {
		t.Errorf("rate-limit requests of plan professional = %v (present %v), want 3", v, ok)
	}
}

// provisionTenant creates a pool tenant through the API and waits until it is active.
func provisionTenant(t *testing.T, o *observed, adminToken string) (id, slug, sagaID string) {
	t.Helper()
	body := `{"name":"Obs Corp","slug":"obs-corp","plan":"starter","model":"pool","admin_email":"admin@obs.example"}`
	var v struct {
		ID     string `json:"id"`
		Slug   string `json:"slug"`
		Status string `json:"status"`
		Saga   *struct {
			ID string `json:"id"`
		} `json:"saga"`
		LastError string `json:"last_error"`
		Revision  int64  `json:"revision"`
	}
	apiCall(t, o, adminToken, "POST", "/v1/tenants", body, http.StatusAccepted, &v)
	id, slug = v.ID, v.Slug
	if v.Saga != nil {
		sagaID = v.Saga.ID
	}
	deadline := time.Now().Add(60 * time.Second)
	for v.Status != "active" {
		if v.Status == "failed" || time.Now().After(deadline) {
			t.Fatalf("tenant %s is %s (%s)", id, v.Status, v.LastError)
		}
		time.Sleep(200 * time.Millisecond)
		apiCall(t, o, adminToken, "GET", "/v1/tenants/"+id, "", http.StatusOK, &v)
		if v.Saga != nil && sagaID == "" {
			sagaID = v.Saga.ID
		}
	}
	if sagaID == "" {
		t.Fatal("the API did not name the saga")
	}
	// The snapshot (and so the rate limiter and authz) learns of the active tenant by the change feed.
	for {
		fams := o.scrape(t)
		if rev, _ := sample(fams, "tenantgate_registry_snapshot_revision", nil); rev >= float64(v.Revision) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the snapshot did not follow the registry")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return id, slug, sagaID
}

func apiCall(t *testing.T, o *observed, token, method, path, body string, wantStatus int, out any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+o.http+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// adsNACK opens a delta ADS stream as an Envoy would, takes the clusters, and rejects them.
func adsNACK(t *testing.T, o *observed) {
	t.Helper()
	// The stream stays open until the test ends: connected clients are counted while connected.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(o.conn(t, o.xds)).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "obs-envoy", Cluster: "tenantgate"}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("ADS: %v", err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "test rejects the clusters"}}); err != nil {
		t.Fatal(err)
	}
	// The server counts the NACK when it reads it; wait for the count rather than for time.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v, ok := sample(o.scrape(t), "tenantgate_xds_nacks_total", map[string]string{"type": "Cluster"}); ok && v >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the NACK was not counted")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertRequestLogLine finds the interceptor's line about the request and checks its ids, and that
// no line holds the token.
func assertRequestLogLine(t *testing.T, logs, requestID, tenantID, token string) {
	t.Helper()
	if strings.Contains(logs, token) {
		t.Error("the log holds a token")
	}
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, requestID) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		if rec["msg"] == "ext_authz check" {
			if rec["tenant_id"] != tenantID || rec["trace_id"] != obsTraceID {
				t.Errorf("request log line lacks the tenant or trace id: %s", line)
			}
			return
		}
	}
	t.Errorf("no log line names request %s", requestID)
}

// otlpCollector is an OTLP/gRPC trace collector that keeps what it receives.
type otlpCollector struct {
	collectortrace.UnimplementedTraceServiceServer
	addr  string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func startCollector(t *testing.T) *otlpCollector {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &otlpCollector{addr: l.Addr().String()}
	s := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(s, c)
	go func() { _ = s.Serve(l) }()
	t.Cleanup(s.Stop)
	return c
}

func (c *otlpCollector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (c *otlpCollector) find(name, traceID string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.GetName() == name && hex.EncodeToString(s.GetTraceId()) == traceID {
			return s
		}
	}
	return nil
}

func (c *otlpCollector) findPrefix(prefix, traceID string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if strings.HasPrefix(s.GetName(), prefix) && hex.EncodeToString(s.GetTraceId()) == traceID {
			return s
		}
	}
	return nil
}

func (c *otlpCollector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, s := range c.spans {
		out = append(out, s.GetName()+"@"+hex.EncodeToString(s.GetTraceId()))
	}
	return out
}

// TestOperationsDoc_NamesEverySeries: docs/operations.md documents every series the tests assert,
// with the same label names.
func TestOperationsDoc_NamesEverySeries(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string][]string{} // name -> sorted labels, from `name{a,b}` or `name`
	for _, m := range regexp.MustCompile("`(tenantgate_[a-z_]+)(\\{([a-z_,]*)\\})?`").FindAllStringSubmatch(string(data), -1) {
		var labels []string
		if m[3] != "" {
			labels = strings.Split(m[3], ",")
		}
		sort.Strings(labels)
		if prev, ok := documented[m[1]]; !ok || len(labels) > len(prev) {
			documented[m[1]] = labels
		}
	}
	all := append(append([]struct {
		name   string
		labels []string
	}{}, documentedSeries...), conditionalSeries...)
	for _, s := range all {
		got, ok := documented[s.name]
		if !ok {
			t.Errorf("docs/operations.md does not name %s", s.name)
			continue
		}
		want := append([]string(nil), s.labels...)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("docs/operations.md gives %s the labels %v, the service has %v", s.name, got, want)
		}
	}
}

// TestServe_UnreachableCollectorCostsNoRequest: with the OTLP collector down, requests are answered
// as usual, shutdown stays within its bound, and the failed export is logged rather than lost.
func TestServe_UnreachableCollectorCostsNoRequest(t *testing.T) {
	dead := freeAddr(t) // nothing listens there
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "tenantgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(`base_domain: `+obsDomain+`
log: { level: info, format: json }
components: [authz, ratelimit]
tenants_file: ""
telemetry:
  tracing: { endpoint: "`+dead+`", insecure: true, sample_ratio: 1 }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	o := &observed{grpc: freeAddr(t), admin: freeAddr(t), logs: &lockedBuffer{}}
	cfg.Listen = config.Listen{GRPC: o.grpc, XDS: freeAddr(t), HTTP: freeAddr(t), Admin: o.admin}
	log, err := newLogger(cfg.Log, o.logs)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, log) }()
	defer cancel()

	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := http.Get("http://" + o.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", o.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for range 5 {
		if r := o.check(t, "nobody."+obsDomain, nil); r.GetStatus().GetCode() == int32(codes.OK) {
			t.Fatal("a request without a credential was allowed")
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s with the collector down")
	}
	if took := time.Since(start); took > cfg.ShutdownTimeout.D()+tracingShutdownTimeout+5*time.Second {
		t.Errorf("shutdown took %s", took)
	}
	if logs := o.logs.String(); !strings.Contains(logs, `"msg":"trace export"`) && !strings.Contains(logs, `"msg":"flush traces"`) {
		t.Errorf("the failed export was not logged:\n%s", tailLines(o.logs.String(), 20))
	}
}
