package telemetry

import (
	"context"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// BenchmarkInterceptor_Check is what observing one Check costs on top of the handler: the bare
// handler call is the baseline, then the interceptor with tracing off (the default), with tracing
// on at a 1% ratio for requests that carry no trace context, and with every request sampled into a
// discarding processor. ns-added is ns/op over the baseline's, measured in the same run.
func BenchmarkInterceptor_Check(b *testing.B) {
	// The handler returns a response built once, as ext_authz does for a cached token, so the
	// baseline is the cheapest real Check and the ratio the worst case.
	authz := &fakeAuthz{seen: make(chan trace.SpanContext, 1)}
	allowed, _ := authz.Check(context.Background(), nil)
	<-authz.seen
	handler := func(context.Context, any) (any, error) { return allowed, nil }
	req := checkRequest(map[string]string{"authorization": "Bearer x", "x-request-id": "req-1"})
	traced := checkRequest(map[string]string{"authorization": "Bearer x", "x-request-id": "req-1", "traceparent": headerTP})
	info := &grpc.UnaryServerInfo{FullMethod: MethodCheck}
	ctx := context.Background()

	var bare float64
	b.Run("bare-handler", func(b *testing.B) {
		for b.Loop() {
			_, _ = handler(ctx, req)
		}
		bare = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	sampled := NewProvider(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter()), 0.01, "bench", "bench")
	all := NewProvider(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter()), 1, "bench", "bench")
	defer func() {
		_ = sampled.Shutdown(ctx)
		_ = all.Shutdown(ctx)
	}()
	cases := []struct {
		name string
		tp   trace.TracerProvider
		req  *authv3.CheckRequest
		top  int
	}{
		{name: "tracing-off", req: req},
		{name: "tracing-off-top-tenants", req: req, top: 100},
		{name: "tracing-1pct-untraced-requests", tp: sampled, req: req},
		{name: "tracing-every-request-sampled", tp: all, req: traced},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			i, err := NewInterceptor(InterceptorOptions{Tracer: c.tp, Registerer: prometheus.NewRegistry(), TopTenants: c.top})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = i.Unary(ctx, c.req, info, handler)
			}
			if bare > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)-bare, "ns-added")
			}
		})
	}
}

// BenchmarkInterceptor_ShouldRateLimit: the same for a rate-limit call with trace context in the
// gRPC metadata, tracing off.
func BenchmarkInterceptor_ShouldRateLimit(b *testing.B) {
	rls := &fakeRLS{}
	handler := func(ctx context.Context, req any) (any, error) {
		return rls.ShouldRateLimit(ctx, req.(*rlsv3.RateLimitRequest))
	}
	req := &rlsv3.RateLimitRequest{Domain: "tenantgate", Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "tenant_id", Value: tenantA}}}}}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", metaTP, "x-request-id", "req-1"))
	i, err := NewInterceptor(InterceptorOptions{Registerer: prometheus.NewRegistry(), PlanOf: func(string) string { return "starter" }})
	if err != nil {
		b.Fatal(err)
	}
	info := &grpc.UnaryServerInfo{FullMethod: MethodShouldRateLimit}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = i.Unary(ctx, req, info, handler)
	}
}
