package main

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"

	"github.com/tenantgate/tenantgate/internal/telemetry"
)

// tracingShutdownTimeout bounds the flush of buffered spans at exit.
const tracingShutdownTimeout = 5 * time.Second

// setupTelemetry starts tracing (when telemetry.tracing.endpoint is set), registers the snapshot's
// metrics, and returns the interceptor that observes Check and ShouldRateLimit on the gRPC server.
func setupTelemetry(a *app) (*telemetry.Interceptor, error) {
	tc := a.cfg.Telemetry
	tr, err := telemetry.NewTracing(tc.Tracing, version)
	if err != nil {
		return nil, err
	}
	a.tracer = tr.Provider
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), tracingShutdownTimeout)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			a.log.Warn("flush traces", slog.Any("error", err))
		}
	})
	if tc.Tracing.Enabled() {
		// The exporter reports a collector it cannot reach through OpenTelemetry's process-wide
		// error handler; route that to the log instead of the standard logger.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			a.log.Warn("trace export", slog.Any("error", err))
		}))
		a.log.Info("tracing on", slog.String("endpoint", tc.Tracing.Endpoint), slog.Float64("sample_ratio", tc.Tracing.SampleRatio))
	}
	changed, err := telemetry.SnapshotMetrics(a.tenants, a.metrics, time.Now)
	if err != nil {
		return nil, err
	}
	a.tenants.Subscribe(changed)
	if tc.Metrics.TopTenants > 0 {
		a.log.Info("per-tenant metrics on for the busiest tenants", slog.Int("top_tenants", tc.Metrics.TopTenants))
	}
	return telemetry.NewInterceptor(telemetry.InterceptorOptions{
		Tracer:     tr.Provider,
		Registerer: a.metrics,
		PlanOf:     a.planOf,
		TopTenants: tc.Metrics.TopTenants,
		Log:        a.log,
	})
}

// planOf is a tenant's plan as a metric label: "" unless the tenant is in the snapshot with a
// configured plan, so the label only ever takes configured values.
func (a *app) planOf(tenantID string) string {
	t, ok := a.tenants.Load().ByID(tenantID)
	if !ok || !a.cfg.KnownPlan(t.Plan) {
		return ""
	}
	return t.Plan
}
