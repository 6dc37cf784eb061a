// Package telemetry is how a tenantgate process reports on itself beyond its own metrics: traces
// (OpenTelemetry, exported over OTLP when configured), structured logs that carry the request and
// tenant ids, and a gRPC interceptor that continues Envoy's trace for Check and ShouldRateLimit.
package telemetry
