package telemetry

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tenantgate/tenantgate/internal/config"
)

// TracerName is the instrumentation scope of every span tenantgate records.
const TracerName = "github.com/tenantgate/tenantgate"

// Propagator reads and writes W3C trace context (traceparent, tracestate), the format Envoy sends.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Tracing is a process's tracer provider and how to flush it.
type Tracing struct {
	Provider trace.TracerProvider
	shutdown func(context.Context) error
}

// Shutdown exports the spans still buffered and stops the exporter; ctx bounds the wait.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// NewTracing builds the tracer provider cfg asks for: an OTLP/gRPC exporter behind a batching
// processor when an endpoint is set, and a provider that records nothing otherwise. Sampling
// follows the caller's decision when there is one, and the ratio for new traces.
func NewTracing(cfg config.Tracing, version string) (*Tracing, error) {
	if !cfg.Enabled() {
		return &Tracing{Provider: noop.NewTracerProvider()}, nil
	}
	opts := []otlptracegrpc.Option{}
	if strings.Contains(cfg.Endpoint, "://") {
		opts = append(opts, otlptracegrpc.WithEndpointURL(cfg.Endpoint))
	} else {
		opts = append(opts, otlptracegrpc.WithEndpoint(cfg.Endpoint))
	}
	if cfg.Insecure {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	if len(cfg.Headers) > 0 {
		h := make(map[string]string, len(cfg.Headers))
		for k, v := range cfg.Headers {
			h[k] = v.Value()
		}
		opts = append(opts, otlptracegrpc.WithHeaders(h))
	}
	// The exporter dials lazily: an unreachable collector drops spans, it never blocks start-up.
	exp, err := otlptracegrpc.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("telemetry.tracing.endpoint: %w", err)
	}
	tp := NewProvider(sdktrace.NewBatchSpanProcessor(exp), cfg.SampleRatio, cfg.ServiceName, version)
	return &Tracing{Provider: tp, shutdown: tp.Shutdown}, nil
}

// NewProvider is a tracer provider that hands spans to proc, sampling new traces at ratio and
// following the parent's decision otherwise. Tests pass an in-memory processor.
func NewProvider(proc sdktrace.SpanProcessor, ratio float64, serviceName, version string) *sdktrace.TracerProvider {
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", serviceName),
		attribute.String("service.version", version),
	))
	if err != nil {
		// Merge fails only on conflicting schema URLs; a schemaless resource has none.
		res = resource.Default()
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithSpanProcessor(proc),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(res),
	)
}
