package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The full gRPC method names the interceptor observes; every other call passes through untouched.
const (
	MethodCheck           = "/envoy.service.auth.v3.Authorization/Check"
	MethodShouldRateLimit = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
)

// Decisions of a Check, the values of the decision label.
const (
	DecisionAllowed     = "allowed"     // OK
	DecisionDenied      = "denied"      // 401 or 403
	DecisionUnavailable = "unavailable" // 503: keys or tenants unavailable, failed closed
	DecisionError       = "error"       // the RPC itself failed
)

// Plan label values that are not plans.
const (
	PlanUnknown = "unknown" // the tenant id is not in the registry snapshot (or names no configured plan)
	PlanNone    = "none"    // the request named no tenant
)

// InterceptorOptions configure NewInterceptor.
type InterceptorOptions struct {
	// Tracer records the spans (a no-op provider when nil).
	Tracer trace.TracerProvider
	// Registerer receives the interceptor's metrics (none when nil).
	Registerer prometheus.Registerer
	// PlanOf returns a tenant's plan, or "" when the tenant is unknown. Its result must be one of
	// the configured plans: it becomes a label value.
	PlanOf func(tenantID string) string
	// TopTenants > 0 turns on the per-tenant view of the busiest tenants.
	TopTenants int
	// Log receives one debug line per observed request (nothing when nil).
	Log *slog.Logger
}

// Interceptor observes the request path's two RPCs: it continues the caller's trace in a server
// span, puts the request (id, tenant) on the context for log lines, and records latency by
// decision and rate-limit answers by plan.
type Interceptor struct {
	tracer     trace.Tracer
	planOf     func(string) string
	log        *slog.Logger
	top        *topCollector
	checkTime  *prometheus.HistogramVec
	rlTime     *prometheus.HistogramVec
	rlRequests *prometheus.CounterVec
	// The latency observers by label value, resolved once: the request path does no label lookup.
	checkTimeBy map[string]prometheus.Observer
	rlTimeBy    map[string]prometheus.Observer
}

// The start options of the two server spans, built once.
var (
	checkSpanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(rpcAttrs("envoy.service.auth.v3.Authorization", "Check")...)}
	rateLimitSpanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(rpcAttrs("envoy.service.ratelimit.v3.RateLimitService", "ShouldRateLimit")...)}
)

// requestBuckets span 50µs (a cached token) to 2.5s (a stuck dependency).
var requestBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

// NewInterceptor builds the interceptor and registers its metrics.
func NewInterceptor(o InterceptorOptions) (*Interceptor, error) {
	tp := o.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	i := &Interceptor{
		tracer: tp.Tracer(TracerName),
		planOf: o.PlanOf,
		log:    o.Log,
		checkTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenantgate_authz_check_duration_seconds",
			Help:    "Time to answer one ext_authz Check, by decision (allowed, denied, unavailable, error).",
			Buckets: requestBuckets,
		}, []string{"decision"}),
		rlTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tenantgate_ratelimit_request_duration_seconds",
			Help:    "Time to answer one ShouldRateLimit, by overall code (ok, over_limit, error).",
			Buckets: requestBuckets,
		}, []string{"code"}),
		rlRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantgate_ratelimit_requests_total",
			Help: "ShouldRateLimit answers by the tenant's plan (unknown, none when not found or not named) and overall code.",
		}, []string{"plan", "code"}),
	}
	if i.planOf == nil {
		i.planOf = func(string) string { return "" }
	}
	collectors := []prometheus.Collector{i.checkTime, i.rlTime, i.rlRequests}
	if o.TopTenants > 0 {
		i.top = newTopCollector(o.TopTenants, "authz", "ratelimit")
		collectors = append(collectors, i.top)
	}
	if o.Registerer != nil {
		for _, c := range collectors {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("telemetry metrics: %w", err)
			}
		}
	}
	i.checkTimeBy = map[string]prometheus.Observer{}
	for _, d := range []string{DecisionAllowed, DecisionDenied, DecisionUnavailable, DecisionError} {
		i.checkTimeBy[d] = i.checkTime.WithLabelValues(d)
	}
	i.rlTimeBy = map[string]prometheus.Observer{}
	for _, c := range []string{"ok", "over_limit", "error"} {
		i.rlTimeBy[c] = i.rlTime.WithLabelValues(c)
	}
	return i, nil
}

// Unary is the grpc.UnaryServerInterceptor.
func (i *Interceptor) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	switch r := req.(type) {
	case *authv3.CheckRequest:
		if info.FullMethod == MethodCheck {
			return i.check(ctx, r, next)
		}
	case *rlsv3.RateLimitRequest:
		if info.FullMethod == MethodShouldRateLimit {
			return i.shouldRateLimit(ctx, r, next)
		}
	}
	return next(ctx, req)
}

func (i *Interceptor) check(ctx context.Context, req *authv3.CheckRequest, next grpc.UnaryHandler) (any, error) {
	start := time.Now()
	rq := &Request{ID: requestIDOfCheck(ctx, req)}
	ctx = WithRequest(CheckContext(ctx, req), rq)
	ctx, span := i.tracer.Start(ctx, "envoy.service.auth.v3.Authorization/Check", checkSpanOpts...)
	defer span.End()

	resp, err := next(ctx, req)
	decision, httpStatus := checkOutcome(resp, err)
	rq.SetTenant(tenantOfCheck(resp))
	took := time.Since(start)
	i.checkTimeBy[decision].Observe(took.Seconds())
	if t := rq.Tenant(); t != "" && i.top != nil {
		i.top.byCmp["authz"].add(t)
	}
	endSpan(span, rq, err, attribute.String("tenantgate.decision", decision), attribute.Int("http.response.status_code", httpStatus))
	if i.log != nil && i.log.Enabled(ctx, slog.LevelDebug) {
		i.log.DebugContext(ctx, "ext_authz check", slog.String("decision", decision), slog.Int("status", httpStatus), slog.Duration("took", took))
	}
	return resp, err
}

func (i *Interceptor) shouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest, next grpc.UnaryHandler) (any, error) {
	start := time.Now()
	tenantID := tenantOfRateLimit(req)
	rq := &Request{ID: requestIDOfCall(ctx)}
	rq.SetTenant(tenantID)
	ctx = WithRequest(MetadataContext(ctx), rq)
	ctx, span := i.tracer.Start(ctx, "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", rateLimitSpanOpts...)
	defer span.End()

	resp, err := next(ctx, req)
	code := "error"
	if err == nil {
		code = "ok"
		if r, ok := resp.(*rlsv3.RateLimitResponse); ok && r.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
			code = "over_limit"
		}
	}
	plan := PlanNone
	if tenantID != "" {
		if plan = i.planOf(tenantID); plan == "" {
			plan = PlanUnknown
		}
	}
	took := time.Since(start)
	i.rlTimeBy[code].Observe(took.Seconds())
	i.rlRequests.WithLabelValues(plan, code).Inc()
	if i.top != nil && plan != PlanNone && plan != PlanUnknown {
		i.top.byCmp["ratelimit"].add(tenantID)
	}
	endSpan(span, rq, err, attribute.String("tenantgate.ratelimit.code", code), attribute.String("tenantgate.plan", plan))
	if i.log != nil && i.log.Enabled(ctx, slog.LevelDebug) {
		i.log.DebugContext(ctx, "rate limit", slog.String("code", code), slog.String("plan", plan), slog.Duration("took", took))
	}
	return resp, err
}

func rpcAttrs(service, method string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", service),
		attribute.String("rpc.method", method),
	}
}

func endSpan(span trace.Span, rq *Request, err error, attrs ...attribute.KeyValue) {
	if !span.IsRecording() {
		return
	}
	if rq.ID != "" {
		attrs = append(attrs, attribute.String("tenantgate.request_id", rq.ID))
	}
	if t := rq.Tenant(); t != "" {
		attrs = append(attrs, attribute.String("tenantgate.tenant_id", t))
	}
	attrs = append(attrs, attribute.String("rpc.grpc.status_code", status.Code(err).String()))
	span.SetAttributes(attrs...)
	if err != nil && status.Code(err) != codes.Canceled {
		span.SetStatus(otelcodes.Error, status.Code(err).String())
	}
}

// checkOutcome names a Check answer's decision and the HTTP status Envoy will send.
func checkOutcome(resp any, err error) (string, int) {
	r, ok := resp.(*authv3.CheckResponse)
	if err != nil || !ok {
		return DecisionError, 0
	}
	if r.GetStatus().GetCode() == int32(codes.OK) {
		return DecisionAllowed, 200
	}
	httpStatus := int(r.GetDeniedResponse().GetStatus().GetCode())
	if httpStatus == 0 {
		httpStatus = 403 // Envoy's default for a denial without a status
	}
	if httpStatus >= 500 {
		return DecisionUnavailable, httpStatus
	}
	return DecisionDenied, httpStatus
}

// tenantOfCheck is the tenant id an allowed Check stamped in its dynamic metadata.
func tenantOfCheck(resp any) string {
	r, ok := resp.(*authv3.CheckResponse)
	if !ok {
		return ""
	}
	return r.GetDynamicMetadata().GetFields()["tenantgate"].GetStructValue().GetFields()["tenant_id"].GetStringValue()
}

// tenantOfRateLimit is the tenant_id descriptor entry of a rate-limit request (the first one).
func tenantOfRateLimit(req *rlsv3.RateLimitRequest) string {
	for _, d := range req.GetDescriptors() {
		for _, e := range d.GetEntries() {
			if e.GetKey() == "tenant_id" {
				return e.GetValue()
			}
		}
	}
	return ""
}
