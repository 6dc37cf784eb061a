package saga

import (
	"context"
	"errors"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type failingStep struct{ noopStep }

func (failingStep) Do(context.Context, *Run) error { return errors.New("dns provider down") }

type failingCatalog struct{ twoSteps }

func (failingCatalog) Step(name string) (Step, bool) { return failingStep{noopStep(name)}, true }

// TestTracedCatalog_StepsAreSpansOfTheSagasTrace: every action of a saga's steps is a span in the
// trace whose id is the saga's id, named after kind, step and action, and a failed action is an
// error span.
func TestTracedCatalog_StepsAreSpansOfTheSagasTrace(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	const sagaID = "6f1d2c3b-4a59-4e8f-9d7c-0b1a2c3d4e5f"
	run := &Run{SagaID: sagaID, Kind: Create, Spec: Spec{TenantID: "3f1c6a0e-8d2b-4c55-9a7e-2b9d0c4e7f11"}, Attempt: 2}

	step, _ := TracedCatalog(twoSteps{}, tp).Step("database")
	if err := step.Do(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	if err := step.Undo(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	failing, _ := TracedCatalog(failingCatalog{}, tp).Step("dns")
	if err := failing.Do(context.Background(), run); err == nil {
		t.Fatal("the traced step hid its error")
	}

	spans := exp.GetSpans()
	want := []string{"saga create database do", "saga create database undo", "saga create dns do"}
	if len(spans) != len(want) {
		t.Fatalf("%d spans, want %d", len(spans), len(want))
	}
	for i, s := range spans {
		if s.Name != want[i] {
			t.Errorf("span %d = %q, want %q", i, s.Name, want[i])
		}
		if got := s.SpanContext.TraceID().String(); got != strings.ReplaceAll(sagaID, "-", "") {
			t.Errorf("span %q in trace %s, want the saga's id", s.Name, got)
		}
	}
	if spans[2].Status.Code != codes.Error || len(spans[2].Events) == 0 {
		t.Errorf("failed step span status %v with %d events, want an error with the recorded error", spans[2].Status, len(spans[2].Events))
	}
}
