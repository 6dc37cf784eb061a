package telemetry

import (
	"context"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// The request headers that carry trace context and the request id.
const (
	headerTraceparent = "traceparent"
	headerTracestate  = "tracestate"
	headerRequestID   = "x-request-id"
)

// CheckContext returns ctx carrying the remote span context Envoy propagated for a Check: the one in
// the gRPC metadata of the call (Envoy's own ext_authz span, when Envoy traces), else the one in the
// checked request's headers (the client's trace, when xds.authz_headers lets traceparent through).
// Without either, ctx is returned as it is.
func CheckContext(ctx context.Context, req *authv3.CheckRequest) context.Context {
	if sc := fromMetadata(ctx); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	if sc := trace.SpanContextFromContext(Propagator.Extract(ctx, checkHeaders{req})); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

// MetadataContext returns ctx carrying the remote span context in the call's gRPC metadata, which
// is where Envoy propagates it to the rate-limit service.
func MetadataContext(ctx context.Context) context.Context {
	if sc := fromMetadata(ctx); sc.IsValid() {
		return trace.ContextWithRemoteSpanContext(ctx, sc)
	}
	return ctx
}

func fromMetadata(ctx context.Context) trace.SpanContext {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md.Get(headerTraceparent)) == 0 {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(Propagator.Extract(context.Background(), metadataCarrier(md)))
}

// maxRequestIDBytes bounds the request id put on log lines and spans: a client may send its own
// (when Envoy preserves external request ids), of any length.
const maxRequestIDBytes = 128

// requestIDOfCheck is the x-request-id Envoy stamps on the checked request, else the call's.
func requestIDOfCheck(ctx context.Context, req *authv3.CheckRequest) string {
	if id := (checkHeaders{req}).Get(headerRequestID); id != "" {
		return boundRequestID(id)
	}
	return requestIDOfCall(ctx)
}

func boundRequestID(id string) string {
	if len(id) > maxRequestIDBytes {
		return id[:maxRequestIDBytes]
	}
	return id
}

func requestIDOfCall(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	if v := md.Get(headerRequestID); len(v) > 0 {
		return boundRequestID(v[0])
	}
	return ""
}

// checkHeaders reads a CheckRequest's HTTP headers: the lower-cased map, or the header_map Envoy
// sends instead when encode_raw_headers is set. It is read-only.
type checkHeaders struct{ req *authv3.CheckRequest }

var _ propagation.TextMapCarrier = checkHeaders{}

func (c checkHeaders) Get(key string) string {
	h := c.req.GetAttributes().GetRequest().GetHttp()
	if v, ok := h.GetHeaders()[key]; ok {
		return v
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		if hv.GetKey() == key {
			if raw := hv.GetRawValue(); len(raw) > 0 {
				return string(raw)
			}
			return hv.GetValue()
		}
	}
	return ""
}

func (checkHeaders) Set(string, string) {}

func (c checkHeaders) Keys() []string {
	return []string{headerTraceparent, headerTracestate}
}

// metadataCarrier reads gRPC metadata (keys are lower-case there too).
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (metadataCarrier) Set(string, string) {}

func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
