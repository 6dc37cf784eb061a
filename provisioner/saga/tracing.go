package saga

import (
	"context"
	"encoding/hex"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracedCatalog returns cat with every step action (do or undo) recorded as a span. The spans of
// one saga share one trace whose id is the saga's id (a UUID is 16 bytes, like a trace id), so
// the whole saga, across retries, workers and replicas, is found by the id the API returned.
func TracedCatalog(cat Catalog, tp trace.TracerProvider) Catalog {
	return tracedCatalog{Catalog: cat, tracer: tp.Tracer("github.com/tenantgate/tenantgate/provisioner/saga")}
}

type tracedCatalog struct {
	Catalog
	tracer trace.Tracer
}

func (c tracedCatalog) Step(name string) (Step, bool) {
	s, ok := c.Catalog.Step(name)
	if !ok {
		return s, ok
	}
	return tracedStep{Step: s, tracer: c.tracer}, true
}

type tracedStep struct {
	Step
	tracer trace.Tracer
}

func (s tracedStep) Do(ctx context.Context, r *Run) error {
	return s.traced(ctx, r, DoAction, s.Step.Do)
}

func (s tracedStep) Undo(ctx context.Context, r *Run) error {
	return s.traced(ctx, r, UndoAction, s.Step.Undo)
}

func (s tracedStep) traced(ctx context.Context, r *Run, a Action, fn func(context.Context, *Run) error) error {
	if parent, ok := sagaSpanContext(r.SagaID); ok && !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, span := s.tracer.Start(ctx, "saga "+string(r.Kind)+" "+s.Name()+" "+string(a),
		trace.WithAttributes(
			attribute.String("tenantgate.saga_id", r.SagaID),
			attribute.String("tenantgate.saga_kind", string(r.Kind)),
			attribute.String("tenantgate.saga_step", s.Name()),
			attribute.String("tenantgate.saga_action", string(a)),
			attribute.Int("tenantgate.saga_attempt", r.Attempt),
			attribute.String("tenantgate.tenant_id", r.Spec.TenantID),
		))
	defer span.End()
	err := fn(ctx, r)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "step failed")
	}
	return err
}

// sagaSpanContext is the sampled remote parent every span of the saga hangs from: trace id = the
// saga's UUID, span id = its last 8 bytes.
func sagaSpanContext(sagaID string) (trace.SpanContext, bool) {
	raw, err := hex.DecodeString(strings.ReplaceAll(sagaID, "-", ""))
	if err != nil || len(raw) != 16 {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], raw)
	copy(sid[:], raw[8:])
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return sc, sc.IsValid()
}
