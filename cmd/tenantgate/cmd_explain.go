package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tenantgate/tenantgate/internal/xdsfetch"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

type explainFlags struct {
	url      string
	headers  []string
	token    string
	method   string
	grpcAddr string
	xdsAddr  string
	endpoint string
	hits     uint32
	timeout  time.Duration
}

func newExplainCmd() *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain --url <url> [-H 'Name: value']... [--token T]",
		Short: "Ask a running tenantgate what Envoy would be told about one request, and why",
		Long: `Explain one request the way Envoy would ask tenantgate about it:

  1. route   the xDS config tenantgate serves (--xds-addr): the tenant scope, route and cluster for
             the URL's host and path, and the context extensions the route gives ext_authz;
  2. authz   a Check request built as Envoy builds it (host, path, method, headers, the route's
             context extensions) sent to --grpc-addr: allowed with the stamped headers, or denied
             with the status and the reason;
  3. limits  the ShouldRateLimit request Envoy would send (tenant_id from the stamped header,
             endpoint from the route's name) with hits_addend 0, so explaining consumes no quota:
             the decision and the remaining quota.

--hits N first counts N requests against the quota, as N requests through Envoy would (to see a
limit being reached). Steps that cannot run (no xDS server, a denied request) say why.`,
		Example: `  tenantgate explain --url https://acme.tenants.localhost/orders --token "$TOKEN"
  tenantgate explain --url https://acme.tenants.localhost/ -H 'Authorization: Bearer ...' -H 'x-tenant-id: spoofed'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExplain(cmd.Context(), cmd.OutOrStdout(), &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "the request URL, such as https://acme.tenants.localhost/orders (required)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "a request header 'Name: value' (repeatable)")
	fl.StringVar(&f.token, "token", "", "a bearer token (sent as Authorization: Bearer <token>; prefer TENANTGATE_TOKEN)")
	fl.StringVarP(&f.method, "request", "X", "GET", "the request method")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:9001", "tenantgate's ext_authz and rate-limit gRPC address")
	fl.StringVar(&f.xdsAddr, "xds-addr", "127.0.0.1:18000", "tenantgate's xDS address (empty: skip routing)")
	fl.StringVar(&f.endpoint, "endpoint", "", "rate-limit endpoint when no route is found (default: the route's name)")
	fl.Uint32Var(&f.hits, "hits", 0, "count this many requests against the quota before explaining")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Second, "bound on each step")
	_ = cmd.MarkFlagRequired("url")
	return cmd
}

// explainRequest is the request as Envoy sees it.
type explainRequest struct {
	method, scheme, host, path string
	headers                    map[string]string
}

func parseExplainRequest(f *explainFlags) (explainRequest, error) {
	u, err := url.Parse(f.url)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return explainRequest{}, fmt.Errorf("--url must be an absolute http or https URL (got %q)", f.url)
	}
	r := explainRequest{method: strings.ToUpper(f.method), scheme: u.Scheme, host: strings.ToLower(u.Host), path: u.RequestURI(), headers: map[string]string{}}
	for _, h := range f.headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" || strings.HasPrefix(name, ":") {
			return explainRequest{}, fmt.Errorf("-H %q: want 'Name: value'", h)
		}
		value = strings.TrimSpace(value)
		if prev, dup := r.headers[name]; dup {
			value = prev + "," + value // Envoy joins repeated headers with a comma
		}
		r.headers[name] = value
	}
	token := f.token
	if token == "" {
		token = os.Getenv("TENANTGATE_TOKEN")
	}
	if token != "" {
		r.headers["authorization"] = "Bearer " + token
	}
	if host, ok := r.headers["host"]; ok {
		r.host = strings.ToLower(host)
		delete(r.headers, "host")
	}
	return r, nil
}

func runExplain(ctx context.Context, out io.Writer, f *explainFlags) error {
	req, err := parseExplainRequest(f)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s %s://%s%s\n\n", req.method, req.scheme, req.host, req.path)

	match := explainRoute(ctx, out, f, req)

	conn, err := grpc.NewClient(f.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--grpc-addr: %w", err)
	}
	defer conn.Close()
	var ext map[string]string
	endpoint := f.endpoint
	if match != nil {
		ext, endpoint = match.ContextExtensions, match.Route.GetName()
	}
	tenantID, err := explainCheck(ctx, out, f, conn, req, ext)
	if err != nil {
		return err
	}
	return explainRateLimit(ctx, out, f, conn, tenantID, endpoint)
}

// explainRoute prints where the xDS config sends the request, and returns the match (nil if none).
func explainRoute(ctx context.Context, out io.Writer, f *explainFlags, req explainRequest) *xdsfetch.Match {
	fmt.Fprintf(out, "Route (xDS from %s)\n", f.xdsAddr)
	if f.xdsAddr == "" {
		fmt.Fprintln(out, "  skipped (--xds-addr is empty): the Check carries no route context extensions")
		fmt.Fprintln(out)
		return nil
	}
	conn, err := grpc.NewClient(f.xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(out, "  unavailable: %v\n\n", err)
		return nil
	}
	defer conn.Close()
	fctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	cfg, err := xdsfetch.Fetch(fctx, conn, &corev3.Node{Id: "tenantgate-explain-" + randomID(), Cluster: "tenantgate-explain"})
	if err != nil {
		fmt.Fprintf(out, "  unavailable: %v\n  (the Check below carries no route context extensions)\n\n", err)
		return nil
	}
	m, err := cfg.Match(req.host, req.path)
	if err != nil {
		fmt.Fprintf(out, "  NO ROUTE: %v\n  Envoy answers 404 for this host and path.\n\n", err)
		return nil
	}
	fmt.Fprintf(out, "  scope        %s (key %s)\n", m.Scope.GetName(), scopeKey(m))
	fmt.Fprintf(out, "  route        %s (%s) in route configuration %s\n", m.Route.GetName(), routeMatch(m), m.RouteConfig.GetName())
	if meta := m.Route.GetMetadata().GetFilterMetadata()[envoybuild.MetadataNamespace]; meta != nil {
		fmt.Fprintf(out, "  tenant       %s (%s, plan %s)\n", meta.GetFields()["tenant_slug"].GetStringValue(),
			meta.GetFields()["tenant_id"].GetStringValue(), meta.GetFields()["tenant_plan"].GetStringValue())
	}
	fmt.Fprintf(out, "  authz told   %s\n", formatMap(m.ContextExtensions))
	fmt.Fprintf(out, "  cluster      %s\n", clusterSummary(m))
	fmt.Fprintln(out)
	return m
}

func scopeKey(m *xdsfetch.Match) string {
	var parts []string
	for _, fr := range m.Scope.GetKey().GetFragments() {
		parts = append(parts, fr.GetStringKey())
	}
	return strings.Join(parts, ",")
}

func routeMatch(m *xdsfetch.Match) string {
	rm := m.Route.GetMatch()
	switch {
	case rm.GetPath() != "":
		return fmt.Sprintf("path %q", rm.GetPath())
	case rm.GetPathSeparatedPrefix() != "":
		return fmt.Sprintf("path-separated prefix %q", rm.GetPathSeparatedPrefix())
	}
	return fmt.Sprintf("prefix %q", rm.GetPrefix())
}

func clusterSummary(m *xdsfetch.Match) string {
	if m.Cluster == nil {
		return m.ClusterName + " (NOT SERVED: Envoy answers 503)"
	}
	la := m.Endpoints
	if la == nil {
		la = m.Cluster.GetLoadAssignment()
	}
	var eps []string
	for _, lle := range la.GetEndpoints() {
		for _, lb := range lle.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			eps = append(eps, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	if len(eps) == 0 {
		return fmt.Sprintf("%s (%s, no endpoints: Envoy answers 503)", m.ClusterName, m.Cluster.GetType())
	}
	return fmt.Sprintf("%s (%s) -> %s", m.ClusterName, m.Cluster.GetType(), strings.Join(eps, ", "))
}

// explainCheck sends the Check and prints the decision. It returns the stamped tenant id ("" when
// denied).
func explainCheck(ctx context.Context, out io.Writer, f *explainFlags, conn grpc.ClientConnInterface, req explainRequest, ext map[string]string) (string, error) {
	fmt.Fprintf(out, "Authorization (ext_authz Check to %s)\n", f.grpcAddr)
	cctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, checkRequest(req, ext))
	if err != nil {
		return "", fmt.Errorf("ext_authz Check at %s: %w (Envoy fails closed: 503)", f.grpcAddr, err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		d := resp.GetDeniedResponse()
		if d == nil {
			d = resp.GetErrorResponse()
		}
		fmt.Fprintf(out, "  DENIED  %d %s\n", d.GetStatus().GetCode(), denialReason(d.GetBody()))
		for _, h := range d.GetHeaders() {
			fmt.Fprintf(out, "  response header  %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		}
		fmt.Fprintln(out)
		return "", nil
	}
	ok := resp.GetOkResponse()
	fmt.Fprintln(out, "  ALLOWED")
	var tenantID string
	for _, h := range ok.GetHeaders() {
		fmt.Fprintf(out, "  stamps   %s: %s\n", h.GetHeader().GetKey(), h.GetHeader().GetValue())
		if h.GetHeader().GetKey() == envoybuild.TenantIDHeader {
			tenantID = h.GetHeader().GetValue()
		}
	}
	if len(ok.GetHeadersToRemove()) > 0 {
		fmt.Fprintf(out, "  removes  %s\n", strings.Join(ok.GetHeadersToRemove(), ", "))
	}
	if md := resp.GetDynamicMetadata(); md != nil {
		js, _ := json.Marshal(md.AsMap())
		fmt.Fprintf(out, "  metadata %s\n", js)
	}
	fmt.Fprintln(out)
	return tenantID, nil
}

// checkRequest builds the CheckRequest as Envoy's ext_authz filter does.
func checkRequest(req explainRequest, ext map[string]string) *authv3.CheckRequest {
	headers := map[string]string{":authority": req.host, ":method": req.method, ":path": req.path, ":scheme": req.scheme}
	for k, v := range req.headers {
		headers[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddr("127.0.0.1", 0)},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddr("127.0.0.1", 10000)},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: randomID(), Method: req.method, Headers: headers, Path: req.path, Host: req.host,
				Scheme: req.scheme, Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: ext,
	}}
}

func socketAddr(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// denialReason reads the reason code from tenantgate's problem body.
func denialReason(body string) string {
	var p struct {
		Title string `json:"title"`
		Code  string `json:"code"`
	}
	if json.Unmarshal([]byte(body), &p) != nil || p.Code == "" {
		return body
	}
	return fmt.Sprintf("%s (reason: %s)", p.Title, p.Code)
}

// explainRateLimit counts --hits requests, then asks with hits_addend 0 and prints the decision.
func explainRateLimit(ctx context.Context, out io.Writer, f *explainFlags, conn grpc.ClientConnInterface, tenantID, endpoint string) error {
	fmt.Fprintf(out, "Rate limit (ShouldRateLimit to %s, domain %s)\n", f.grpcAddr, envoybuild.RateLimitDomain)
	switch {
	case tenantID == "":
		fmt.Fprintln(out, "  not asked: the request was denied, so Envoy stops before rate limiting")
		return nil
	case endpoint == "":
		fmt.Fprintln(out, "  not asked: no route, so no endpoint descriptor (give --endpoint to ask anyway)")
		return nil
	}
	client := rlsv3.NewRateLimitServiceClient(conn)
	ask := func(hits uint32) (*rlsv3.RateLimitResponse, error) {
		rctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		return client.ShouldRateLimit(rctx, rateLimitRequest(tenantID, endpoint, hits))
	}
	if f.hits > 0 {
		if _, err := ask(f.hits); err != nil {
			return fmt.Errorf("ShouldRateLimit at %s: %w", f.grpcAddr, err)
		}
		fmt.Fprintf(out, "  counted  %d request(s) (--hits)\n", f.hits)
	}
	resp, err := ask(0)
	if err != nil {
		return fmt.Errorf("ShouldRateLimit at %s: %w", f.grpcAddr, err)
	}
	fmt.Fprintf(out, "  asked    tenant_id=%s endpoint=%s (hits_addend 0: nothing counted)\n", tenantID, endpoint)
	fmt.Fprintf(out, "  %s\n", rateLimitVerdict(resp))
	for _, st := range resp.GetStatuses() {
		if st.GetCurrentLimit() == nil {
			continue
		}
		fmt.Fprintf(out, "  tightest window  %d per %s, %d remaining, resets in %s\n",
			st.GetCurrentLimit().GetRequestsPerUnit(), unitName(st.GetCurrentLimit()),
			st.GetLimitRemaining(), st.GetDurationUntilReset().AsDuration().Round(time.Second))
	}
	for _, h := range resp.GetResponseHeadersToAdd() {
		if h.GetKey() != "RateLimit" {
			continue
		}
		for _, w := range parseRateLimitHeader(h.GetValue()) {
			fmt.Fprintf(out, "  window %-16s %s remaining, resets in %ss\n", w.name, w.remaining, w.reset)
		}
	}
	var hs []string
	for _, h := range resp.GetResponseHeadersToAdd() {
		hs = append(hs, fmt.Sprintf("  response header  %s: %s", h.GetKey(), h.GetValue()))
	}
	slices.Sort(hs)
	for _, h := range hs {
		fmt.Fprintln(out, h)
	}
	return nil
}

// rateLimitWindow is one item of the RateLimit header: a window's name, what remains and when.
type rateLimitWindow struct{ name, remaining, reset string }

// parseRateLimitHeader reads the IETF draft's RateLimit list (`"1h";r=99;t=3600, "1s";r=9;t=1`),
// which tenantgate fills with every window of the request, the most constraining first. Items it
// cannot read are skipped: explain prints the raw header too.
func parseRateLimitHeader(v string) []rateLimitWindow {
	var out []rateLimitWindow
	for _, item := range splitOutsideQuotes(v, ',') {
		item = strings.TrimSpace(item)
		name, params, ok := cutQuoted(item)
		if !ok {
			continue
		}
		w := rateLimitWindow{name: strconv.Quote(name)}
		for _, p := range strings.Split(params, ";") {
			k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
			switch k {
			case "r":
				w.remaining = val
			case "t":
				w.reset = val
			}
		}
		if w.remaining != "" && w.reset != "" {
			out = append(out, w)
		}
	}
	return out
}

// splitOutsideQuotes splits s at sep where sep is not inside a structured-field string.
func splitOutsideQuotes(s string, sep byte) []string {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && s[i] == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// cutQuoted splits `"name";params` into the unescaped name and the parameters.
func cutQuoted(item string) (name, params string, ok bool) {
	if len(item) < 2 || item[0] != '"' {
		return "", "", false
	}
	var b strings.Builder
	for i := 1; i < len(item); i++ {
		switch item[i] {
		case '\\':
			if i+1 < len(item) {
				i++
				b.WriteByte(item[i])
			}
		case '"':
			return b.String(), strings.TrimPrefix(item[i+1:], ";"), true
		default:
			b.WriteByte(item[i])
		}
	}
	return "", "", false
}

// rateLimitVerdict says what the request itself would get. Asked with hits_addend 0 the service
// admits while nothing is over; a window with nothing remaining refuses the next request.
func rateLimitVerdict(resp *rlsv3.RateLimitResponse) string {
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		return "OVER_LIMIT: Envoy answers 429 Too Many Requests"
	}
	for _, st := range resp.GetStatuses() {
		if st.GetCurrentLimit() != nil && st.GetLimitRemaining() == 0 {
			return "OVER_LIMIT: the window is used up, so this request gets 429 Too Many Requests"
		}
	}
	return "OK: within every window"
}

// rateLimitRequest is what Envoy's rate-limit filter sends for a tenant route, with the descriptor's
// hits_addend set explicitly (0 asks without counting).
func rateLimitRequest(tenantID, endpoint string, hits uint32) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{
		Domain: envoybuild.RateLimitDomain,
		Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{
				{Key: envoybuild.DescriptorTenantID, Value: tenantID},
				{Key: envoybuild.DescriptorEndpoint, Value: endpoint},
			},
			HitsAddend: wrapperspb.UInt64(uint64(hits)),
		}},
	}
}

func unitName(l *rlsv3.RateLimitResponse_RateLimit) string {
	if l.GetUnitMultiplier().GetValue() > 1 {
		return fmt.Sprintf("%d %ss", l.GetUnitMultiplier().GetValue(), strings.ToLower(l.GetUnit().String()))
	}
	return strings.ToLower(l.GetUnit().String())
}

func formatMap(m map[string]string) string {
	if len(m) == 0 {
		return "(nothing)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

func randomID() string { return strings.ToLower(rand.Text()[:16]) }
