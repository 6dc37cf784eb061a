package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/internal/xdsfetch"
)

const baseDomain = "e2e.test"

// Plan windows small enough to exhaust in a test, long enough not to slide during it. free fails
// closed when Redis is down, the others open.
var planLimits = map[string]int{"free": 5, "starter": 8, "professional": 12}

const configTemplate = `base_domain: %[1]s
log: { level: debug, format: text }
plans:
  free:         { windows: [{ limit: 5,  period: 1h }], failure_mode: closed }
  starter:      { windows: [{ limit: 8,  period: 1h }], failure_mode: open }
  professional: { windows: [{ limit: 12, period: 1h }], failure_mode: open }
authz:
  issuers:
    - issuer: %[2]s
      audiences: [tenantgate]
      algorithms: [ES256]
      jwks_url: %[3]s
ratelimit:
  redis: { key_prefix: "%[4]s" }
xds:
  debounce: 10ms
  pool: { endpoints: ["127.0.0.1:18081"] }
provisioner:
  poll_interval: 100ms
  backoff: 100ms
  max_backoff: 1s
  admin: { issuer: %[2]s, scope: "tenantgate:admin" }
  kubernetes: { enabled: "false" }
  dns: { provider: record }
  email: { smtp_addr: %[5]s, from: "tenantgate@e2e.test" }
`

// node is one tenantgate process and its addresses.
type node struct {
	p                      *process
	grpc, xds, http, admin string
	conn                   *grpc.ClientConn
}

// cluster is the system under test.
type cluster struct {
	bin       string
	dir       string
	issuer    *issuer
	smtp      *smtpServer
	redis     *redisServer
	pgProxy   *tcpProxy // between the sidecars and Postgres
	cpProxy   *tcpProxy // between the control plane and Postgres
	dbURL     string
	keyPrefix string
	control   *node
	sidecars  [2]*node
	api       *http.Client
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{dir: dir, api: &http.Client{Timeout: 10 * time.Second}, keyPrefix: "e2e" + testenv.Suffix() + ":"}
	c.redis = startRedis(t, dir)
	c.dbURL = testenv.Database(t)
	c.bin = buildBinary(t, dir)
	c.issuer = startIssuer(t, dir)
	c.smtp = startSMTP(t)

	u, err := url.Parse(c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	c.pgProxy, c.cpProxy = startProxy(t, u.Host), startProxy(t, u.Host)
	proxied, cpProxied := *u, *u
	proxied.Host, cpProxied.Host = c.pgProxy.addr, c.cpProxy.addr

	cfgPath := filepath.Join(dir, "tenantgate.yaml")
	cfg := fmt.Sprintf(configTemplate, baseDomain, c.issuer.url, c.issuer.jwks, c.keyPrefix, c.smtp.addr)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// Every process reaches Postgres through a proxy the test can cut: the control plane through one,
	// the sidecars through another.
	c.control = c.launch(t, "control", cfgPath, "xds,provisioner", cpProxied.String())
	for i := range c.sidecars {
		c.sidecars[i] = c.launch(t, fmt.Sprintf("sidecar%d", i+1), cfgPath, "authz,ratelimit", proxied.String())
	}
	return c
}

// launch starts a tenantgate process and waits until it is ready. A port another program took
// between freeAddr and the bind is not this test's failure: it tries again on other ports.
func (c *cluster) launch(t *testing.T, name, cfgPath, components, dbURL string) *node {
	t.Helper()
	for attempt := 1; ; attempt++ {
		n := c.startNode(t, fmt.Sprintf("%s-%d", name, attempt), cfgPath, components, dbURL)
		err := waitReady(n.p, n.admin, 60*time.Second)
		if err == nil {
			return n
		}
		if attempt == 3 || !errors.Is(err, errExited) || !strings.Contains(n.p.tail(40), "address already in use") {
			t.Fatal(err)
		}
	}
}

func (c *cluster) startNode(t *testing.T, name, cfgPath, components, dbURL string) *node {
	t.Helper()
	n := &node{grpc: freeAddr(t), xds: freeAddr(t), http: freeAddr(t), admin: freeAddr(t)}
	env := []string{
		"TENANTGATE_DATABASE_URL=" + dbURL,
		"TENANTGATE_REDIS_URL=redis://" + c.redis.addr + "/0",
		"SSL_CERT_FILE=" + c.issuer.caFile, // trust the test's JWKS server
	}
	n.p = startProcess(t, name, c.dir, env, c.bin, "serve", "--config", cfgPath, "--components", components,
		"--grpc-addr", n.grpc, "--xds-addr", n.xds, "--http-addr", n.http, "--admin-addr", n.admin)
	conn, err := grpc.NewClient(n.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	n.conn = conn
	return n
}

// apiTenant is the provisioner API's view of a tenant.
type apiTenant struct {
	ID        string         `json:"id"`
	Slug      string         `json:"slug"`
	Plan      string         `json:"plan"`
	Model     string         `json:"model"`
	Status    string         `json:"status"`
	Resources map[string]any `json:"resources"`
	LastError string         `json:"last_error"`
}

// call sends an admin API request and decodes a JSON answer into out (if not nil).
func (c *cluster) call(t *testing.T, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		js, _ := json.Marshal(body)
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, "http://"+c.control.http+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.issuer.adminToken(t))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.api.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return resp.StatusCode
}

func (c *cluster) tenant(t *testing.T, id string) apiTenant {
	t.Helper()
	var tn apiTenant
	if code := c.call(t, http.MethodGet, "/v1/tenants/"+id, nil, &tn); code != http.StatusOK {
		t.Fatalf("GET tenant %s: %d", id, code)
	}
	return tn
}

// waitStatus waits until the tenant has the status, failing early if it failed.
func (c *cluster) waitStatus(t *testing.T, id, status string) apiTenant {
	t.Helper()
	var tn apiTenant
	eventually(t, 30*time.Second, "tenant "+id+" "+status, func() error {
		tn = c.tenant(t, id)
		if tn.Status == status {
			return nil
		}
		if tn.Status == "failed" {
			t.Fatalf("tenant %s failed: %s", id, tn.LastError)
		}
		return fmt.Errorf("status %s", tn.Status)
	})
	return tn
}

// xdsConfig fetches the control plane's config as an Envoy would (state of the world unless told
// xdsfetch.Delta()).
func (c *cluster) xdsConfig(t *testing.T, opts ...xdsfetch.Option) *xdsfetch.Config {
	t.Helper()
	conn, err := grpc.NewClient(c.control.xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg, err := xdsfetch.Fetch(ctx, conn, &corev3.Node{Id: "e2e-envoy", Cluster: "e2e"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func host(slug string) string { return slug + "." + baseDomain }

// check sends a Check as Envoy's ext_authz filter would for a request to host with the headers,
// carrying the context extensions of the route the host's scope gives (none if ext is nil).
func check(t *testing.T, n *node, hostname string, headers map[string]string, ext map[string]string) *authv3.CheckResponse {
	t.Helper()
	h := map[string]string{":authority": hostname, ":method": "GET", ":path": "/orders", ":scheme": "https"}
	for k, v := range headers {
		h[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(n.conn).Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "e2e", Method: "GET", Headers: h, Path: "/orders", Host: hostname, Scheme: "https", Protocol: "HTTP/2",
		}},
		ContextExtensions: ext,
	}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

func bearer(token string) map[string]string {
	return map[string]string{"authorization": "Bearer " + token}
}

// stamped returns the value of a header the OK response sets.
func stamped(resp *authv3.CheckResponse, name string) (string, *corev3.HeaderValueOption) {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue(), h
		}
	}
	return "", nil
}

// deniedStatus is the HTTP status Envoy would answer a denied Check with (0 when allowed).
func deniedStatus(resp *authv3.CheckResponse) int {
	if resp.GetOkResponse() != nil && resp.GetStatus().GetCode() == 0 {
		return 0
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return int(d.GetStatus().GetCode())
	}
	return int(resp.GetErrorResponse().GetStatus().GetCode())
}

// denialCode is the reason code in a denial's problem body.
func denialCode(resp *authv3.CheckResponse) string {
	body := resp.GetDeniedResponse().GetBody()
	if body == "" {
		body = resp.GetErrorResponse().GetBody()
	}
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal([]byte(body), &p)
	return p.Code
}

// shouldRateLimit sends what Envoy's rate-limit filter sends for a tenant route.
func shouldRateLimit(t *testing.T, n *node, tenantID, endpoint string) (*rlsv3.RateLimitResponse, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return rlsv3.NewRateLimitServiceClient(n.conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: "tenantgate",
		Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
			{Key: "tenant_id", Value: tenantID}, {Key: "endpoint", Value: endpoint},
		}}},
	})
}
