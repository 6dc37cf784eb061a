package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	tenantA  = "3f1c6a0e-8d2b-4c55-9a7e-2b9d0c4e7f11"
	headerTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	metaTP   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// fakeAuthz allows every request for tenantA, or denies with 403 when deny is set, and records the
// span context its handler saw.
type fakeAuthz struct {
	authv3.UnimplementedAuthorizationServer
	deny bool
	seen chan trace.SpanContext
	log  func(ctx context.Context)
}

func (f *fakeAuthz) Check(ctx context.Context, _ *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	f.seen <- trace.SpanContextFromContext(ctx)
	if f.log != nil {
		f.log(ctx)
	}
	if f.deny {
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}}},
		}, nil
	}
	facts, _ := structpb.NewStruct(map[string]any{"tenant_id": tenantA})
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{"tenantgate": structpb.NewStructValue(facts)}},
	}, nil
}

type fakeRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
	code rlsv3.RateLimitResponse_Code
}

func (f *fakeRLS) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return &rlsv3.RateLimitResponse{OverallCode: f.code}, nil
}

// served starts a loopback gRPC server with the interceptor in front of authz and rls.
func served(t *testing.T, i *Interceptor, authz authv3.AuthorizationServer, rls rlsv3.RateLimitServiceServer) *grpc.ClientConn {
	t.Helper()
	s := grpc.NewServer(grpc.ChainUnaryInterceptor(i.Unary))
	authv3.RegisterAuthorizationServer(s, authz)
	rlsv3.RegisterRateLimitServiceServer(s, rls)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		s.Stop()
	})
	return conn
}

func checkRequest(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Host: "acme.example.test", Path: "/", Headers: headers},
	}}}
}

func mustTraceID(s string) trace.TraceID {
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		panic(err)
	}
	return id
}

func mustSpanID(s string) trace.SpanID {
	id, err := trace.SpanIDFromHex(s)
	if err != nil {
		panic(err)
	}
	return id
}

// TestCheck_ContinuesEnvoysTrace: the server span of a Check is the child of the span context Envoy
// sent, in the gRPC metadata or else in the checked request's traceparent header, and the handler
// runs inside that span.
func TestCheck_ContinuesEnvoysTrace(t *testing.T) {
	tests := []struct {
		name       string
		headers    map[string]string
		metadata   []string
		wantTrace  string // "" for a new root trace
		wantParent string
		recorded   bool
	}{
		{"traceparent in the request headers", map[string]string{"traceparent": headerTP, "x-request-id": "req-1"}, nil,
			"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
		{"traceparent in the gRPC metadata wins over the headers", map[string]string{"traceparent": headerTP}, []string{"traceparent", metaTP},
			"0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", true},
		{"tracestate travels along", map[string]string{"traceparent": headerTP, "tracestate": "vendor=abc"}, nil,
			"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
		{"a caller that did not sample is followed", map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}, nil,
			"", "", false},
		{"no trace context starts a new trace", map[string]string{"x-request-id": "req-2"}, nil, "", "", true},
		{"a malformed traceparent starts a new trace", map[string]string{"traceparent": "00-zz-00f067aa0ba902b7-01"}, nil, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tp := NewProvider(sdktrace.NewSimpleSpanProcessor(exp), 1, "tenantgate-test", "test")
			defer func() { _ = tp.Shutdown(context.Background()) }()
			i, err := NewInterceptor(InterceptorOptions{Tracer: tp, Registerer: prometheus.NewRegistry()})
			if err != nil {
				t.Fatal(err)
			}
			authz := &fakeAuthz{seen: make(chan trace.SpanContext, 1)}
			conn := served(t, i, authz, &fakeRLS{})
			ctx := context.Background()
			if tt.metadata != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.metadata...)
			}
			if _, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest(tt.headers)); err != nil {
				t.Fatal(err)
			}
			inHandler := <-authz.seen
			spans := exp.GetSpans()
			if !tt.recorded {
				if len(spans) != 0 {
					t.Fatalf("recorded %d spans for an unsampled caller", len(spans))
				}
				if inHandler.TraceID() != mustTraceID("4bf92f3577b34da6a3ce929d0e0e4736") {
					t.Errorf("handler context lost the caller's trace: %s", inHandler.TraceID())
				}
				return
			}
			if len(spans) != 1 {
				t.Fatalf("recorded %d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name != "envoy.service.auth.v3.Authorization/Check" || s.SpanKind != trace.SpanKindServer {
				t.Errorf("span %q kind %s", s.Name, s.SpanKind)
			}
			if tt.wantTrace != "" {
				if s.SpanContext.TraceID() != mustTraceID(tt.wantTrace) {
					t.Errorf("trace id %s, want %s", s.SpanContext.TraceID(), tt.wantTrace)
				}
				if s.Parent.SpanID() != mustSpanID(tt.wantParent) || !s.Parent.IsRemote() {
					t.Errorf("parent %s (remote %v), want remote %s", s.Parent.SpanID(), s.Parent.IsRemote(), tt.wantParent)
				}
			} else if s.Parent.IsValid() {
				t.Errorf("span has parent %s, want a root span", s.Parent.SpanID())
			}
			if tt.headers["tracestate"] != "" && s.SpanContext.TraceState().Get("vendor") != "abc" {
				t.Errorf("tracestate %q lost", s.SpanContext.TraceState().String())
			}
			if inHandler.SpanID() != s.SpanContext.SpanID() {
				t.Errorf("handler ran in span %s, not the server span %s", inHandler.SpanID(), s.SpanContext.SpanID())
			}
			attrs := map[string]string{}
			for _, kv := range s.Attributes {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			if attrs["tenantgate.tenant_id"] != tenantA || attrs["tenantgate.decision"] != DecisionAllowed {
				t.Errorf("span attributes %v", attrs)
			}
			if id := tt.headers["x-request-id"]; id != "" && attrs["tenantgate.request_id"] != id {
				t.Errorf("request id %q, want %q", attrs["tenantgate.request_id"], id)
			}
		})
	}
}

// TestShouldRateLimit_ContinuesTraceFromMetadata: Envoy sends the trace context of its rate-limit
// call in the gRPC metadata; the span continues it and carries the plan and the code.
func TestShouldRateLimit_ContinuesTraceFromMetadata(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := NewProvider(sdktrace.NewSimpleSpanProcessor(exp), 1, "tenantgate-test", "test")
	defer func() { _ = tp.Shutdown(context.Background()) }()
	reg := prometheus.NewRegistry()
	i, err := NewInterceptor(InterceptorOptions{Tracer: tp, Registerer: reg, PlanOf: func(id string) string {
		if id == tenantA {
			return "starter"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	conn := served(t, i, &fakeAuthz{seen: make(chan trace.SpanContext, 1)}, &fakeRLS{code: rlsv3.RateLimitResponse_OVER_LIMIT})
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", metaTP, "x-request-id", "req-rl")
	req := &rlsv3.RateLimitRequest{Domain: "tenantgate", Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "tenant_id", Value: tenantA}}}}}
	if _, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, req); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("recorded %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.SpanContext.TraceID() != mustTraceID("0af7651916cd43dd8448eb211c80319c") || s.Parent.SpanID() != mustSpanID("b7ad6b7169203331") {
		t.Errorf("span %s/%s parent %s: not the metadata's trace", s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.Parent.SpanID())
	}
	if got := testutil.ToFloat64(i.rlRequests.WithLabelValues("starter", "over_limit")); got != 1 {
		t.Errorf("tenantgate_ratelimit_requests_total{plan=starter,code=over_limit} = %v, want 1", got)
	}
	// An unknown tenant is counted under plan="unknown", never under its id.
	req.Descriptors[0].Entries[0].Value = "00000000-0000-4000-8000-000000000000"
	if _, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(i.rlRequests.WithLabelValues(PlanUnknown, "over_limit")); got != 1 {
		t.Errorf("unknown tenant counted %v times under plan=unknown, want 1", got)
	}
}

// TestCheck_LogLinesCarryRequestAndTenant: a line the handler logs with the request's context
// carries the request id and the trace id; the interceptor's own line after the decision also
// carries the tenant id.
func TestCheck_LogLinesCarryRequestAndTenant(t *testing.T) {
	var buf bytes.Buffer
	log, err := NewLogger("json", slog.LevelDebug, &buf)
	if err != nil {
		t.Fatal(err)
	}
	exp := tracetest.NewInMemoryExporter()
	tp := NewProvider(sdktrace.NewSimpleSpanProcessor(exp), 1, "tenantgate-test", "test")
	defer func() { _ = tp.Shutdown(context.Background()) }()
	i, err := NewInterceptor(InterceptorOptions{Tracer: tp, Registerer: prometheus.NewRegistry(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	authz := &fakeAuthz{seen: make(chan trace.SpanContext, 1), log: func(ctx context.Context) { log.InfoContext(ctx, "in handler") }}
	conn := served(t, i, authz, &fakeRLS{})
	if _, err := authv3.NewAuthorizationClient(conn).Check(context.Background(),
		checkRequest(map[string]string{"traceparent": headerTP, "x-request-id": "req-42", "authorization": "Bearer secret-token"})); err != nil {
		t.Fatal(err)
	}
	<-authz.seen
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), buf.String())
	}
	for n, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("line %d is not JSON: %v", n, err)
		}
		if rec["request_id"] != "req-42" || rec["trace_id"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("line %d lacks the request or trace id: %s", n, line)
		}
	}
	var last map[string]any
	_ = json.Unmarshal(lines[1], &last)
	if last["tenant_id"] != tenantA || last["decision"] != DecisionAllowed {
		t.Errorf("decision line lacks the tenant or decision: %s", lines[1])
	}
	if bytes.Contains(buf.Bytes(), []byte("secret-token")) {
		t.Error("a log line holds the token")
	}
}

// TestRequestID_IsBounded: a client's oversized x-request-id reaches the log lines cut to 128 bytes.
func TestRequestID_IsBounded(t *testing.T) {
	long := strings.Repeat("r", 10000)
	got := requestIDOfCheck(context.Background(), checkRequest(map[string]string{"x-request-id": long}))
	if len(got) != maxRequestIDBytes {
		t.Errorf("request id of %d bytes, want %d", len(got), maxRequestIDBytes)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-request-id", long))
	if got := requestIDOfCall(ctx); len(got) != maxRequestIDBytes {
		t.Errorf("call request id of %d bytes, want %d", len(got), maxRequestIDBytes)
	}
}
