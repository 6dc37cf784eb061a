package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a slog logger writing format ("json" or "text") at level to w. Every line
// logged with a request's context carries that request's request_id and tenant_id (once known),
// and its trace_id when the request is traced; no other part of the request is added.
func NewLogger(format string, level slog.Leveler, w io.Writer) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: must be json or text", format)
	}
	return slog.New(requestHandler{h}), nil
}

// Request is what the log lines of one request share. The tenant is learned during the request
// (a Check knows it only once the token is verified), so it is set in place.
type Request struct {
	ID     string
	tenant atomic.Pointer[string]
}

// SetTenant records the request's tenant id for the lines logged from now on.
func (r *Request) SetTenant(id string) {
	if r != nil && id != "" {
		r.tenant.Store(&id)
	}
}

// Tenant is the tenant id recorded so far, or "".
func (r *Request) Tenant() string {
	if r == nil {
		return ""
	}
	if p := r.tenant.Load(); p != nil {
		return *p
	}
	return ""
}

type requestKey struct{}

// WithRequest returns ctx carrying the request r, for the log lines and for SetTenant.
func WithRequest(ctx context.Context, r *Request) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// RequestFrom returns the request ctx carries, or nil.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}

// requestHandler adds the request's ids from the context to each record.
type requestHandler struct{ slog.Handler }

func (h requestHandler) Handle(ctx context.Context, rec slog.Record) error {
	r := RequestFrom(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if r == nil && !sc.IsValid() {
		return h.Handler.Handle(ctx, rec)
	}
	rec = rec.Clone() // the caller's record may share its attributes' storage
	if r != nil {
		if r.ID != "" {
			rec.AddAttrs(slog.String("request_id", r.ID))
		}
		if t := r.Tenant(); t != "" {
			rec.AddAttrs(slog.String("tenant_id", t))
		}
	}
	if sc.IsValid() {
		rec.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, rec)
}

func (h requestHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestHandler) WithGroup(name string) slog.Handler {
	return requestHandler{h.Handler.WithGroup(name)}
}
