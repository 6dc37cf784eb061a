package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/saga"
)

// Service is what the API calls: *provisioner.Provisioner.
type Service interface {
	Create(ctx context.Context, req provisioner.CreateRequest, idempotencyKey string) (provisioner.View, bool, error)
	Get(ctx context.Context, id string) (provisioner.View, error)
	List(ctx context.Context, q registry.ListQuery) (registry.Page, error)
	ChangePlan(ctx context.Context, id, plan string) (provisioner.View, error)
	Suspend(ctx context.Context, id string) (provisioner.View, error)
	Resume(ctx context.Context, id string) (provisioner.View, error)
	Retry(ctx context.Context, id string) (provisioner.View, error)
	Delete(ctx context.Context, id string) (provisioner.View, error)
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// Handler serves /v1/tenants.
type Handler struct {
	svc      Service
	verifier AdminVerifier
	log      *slog.Logger
	mux      *http.ServeMux
	root     http.Handler
	m        metrics
}

// NewHandler returns the API handler. reg may be nil.
func NewHandler(svc Service, verifier AdminVerifier, log *slog.Logger, reg prometheus.Registerer) (*Handler, error) {
	if svc == nil || verifier == nil {
		return nil, errors.New("api: a service and an admin verifier are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{svc: svc, verifier: verifier, log: log, mux: http.NewServeMux(), m: newMetrics()}
	if reg != nil {
		if err := h.m.register(reg); err != nil {
			return nil, err
		}
	}
	routes := []struct {
		pattern, name string
		fn            func(w http.ResponseWriter, r *http.Request) error
	}{
		{"POST /v1/tenants", "create", h.create},
		{"GET /v1/tenants", "list", h.list},
		{"GET /v1/tenants/{id}", "get", h.get},
		{"PATCH /v1/tenants/{id}", "patch", h.patch},
		{"POST /v1/tenants/{id}/suspend", "suspend", h.action(svc.Suspend, http.StatusOK)},
		{"POST /v1/tenants/{id}/resume", "resume", h.action(svc.Resume, http.StatusOK)},
		{"POST /v1/tenants/{id}/retry", "retry", h.action(svc.Retry, http.StatusAccepted)},
		{"DELETE /v1/tenants/{id}", "delete", h.action(svc.Delete, http.StatusAccepted)},
	}
	for _, rt := range routes {
		h.mux.Handle(rt.pattern, h.wrap(rt.name, rt.fn))
	}
	// Every request is authenticated first, even one for a path or method that does not exist:
	// nothing about the API is told to a caller without an admin token.
	h.root = h.requireAdmin(http.HandlerFunc(h.route))
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.root.ServeHTTP(w, r) }

func (h *Handler) route(w http.ResponseWriter, r *http.Request) {
	methods := allowed(r.URL.Path)
	switch {
	case methods == "":
		writeProblem(w, r, Problem{Type: typeNotFound, Status: http.StatusNotFound, Detail: "no such resource"})
	case !strings.Contains(", "+methods+",", ", "+r.Method+","):
		w.Header().Set("Allow", methods)
		writeProblem(w, r, Problem{Type: typeMethod, Status: http.StatusMethodNotAllowed, Detail: r.Method + " is not allowed here"})
	default:
		h.mux.ServeHTTP(w, r)
	}
}

// allowed lists the methods of a path of the API; empty for a path that is not one.
func allowed(p string) string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) < 2 || parts[0] != "v1" || parts[1] != "tenants" {
		return ""
	}
	switch {
	case len(parts) == 2:
		return "GET, POST"
	case len(parts) == 3 && parts[2] != "":
		return "GET, PATCH, DELETE"
	case len(parts) == 4 && parts[2] != "" && (parts[3] == "suspend" || parts[3] == "resume" || parts[3] == "retry"):
		return "POST"
	}
	return ""
}

// wrap turns a handler's error into its problem response, and counts the call.
func (h *Handler) wrap(name string, fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		err := fn(w, r)
		code := http.StatusOK
		if err != nil {
			p := h.problemOf(err)
			code = p.Status
			if code >= 500 {
				h.log.Error("provisioner API call failed", slog.String("call", name), slog.Any("error", err))
			}
			writeProblem(w, r, p)
		}
		h.m.requests.WithLabelValues(name, strconv.Itoa(code/100)+"xx").Observe(time.Since(start).Seconds())
		if name != "get" && name != "list" {
			h.log.Info("provisioner API call", slog.String("call", name), slog.String("subject", subjectOf(r.Context())),
				slog.String("tenant", r.PathValue("id")), slog.Int("status", code))
		}
	})
}

func (h *Handler) problemOf(err error) Problem {
	var fe *provisioner.FieldError
	var ce *provisioner.ConflictError
	var be *bodyError
	switch {
	case errors.As(err, &be):
		return fieldProblem(http.StatusBadRequest, be.field, be.reason)
	case errors.As(err, &fe):
		return fieldProblem(http.StatusUnprocessableEntity, fe.Field, fe.Reason)
	case errors.Is(err, provisioner.ErrIdempotencyMismatch):
		return Problem{Type: typeIdempotency, Status: http.StatusConflict, Title: "Idempotency-Key reused",
			Detail:        "this Idempotency-Key was used with a different request body",
			InvalidParams: []InvalidParam{{Name: "Idempotency-Key", Reason: "used before with a different body"}}}
	case errors.As(err, &ce):
		p := Problem{Type: typeConflict, Status: http.StatusConflict, Detail: ce.Reason}
		if ce.Field != "" {
			p.InvalidParams = []InvalidParam{{Name: ce.Field, Reason: ce.Reason}}
		}
		return p
	case errors.Is(err, provisioner.ErrNotFound):
		return Problem{Type: typeNotFound, Status: http.StatusNotFound, Detail: "no tenant with that id"}
	case storeUnreachable(err):
		return Problem{Type: typeUnavailable, Status: http.StatusServiceUnavailable,
			Detail: "the tenant store cannot be reached; try again shortly (a create retried with the same Idempotency-Key is safe)"}
	}
	return Problem{Type: typeInternal, Status: http.StatusInternalServerError, Detail: "the request could not be completed; see the server log"}
}

// bodyError is a request body that cannot be read as the call's JSON.
type bodyError struct{ field, reason string }

func (e *bodyError) Error() string { return e.field + ": " + e.reason }

// decode reads the JSON body into v strictly: one object, no unknown fields.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return &bodyError{"Content-Type", "must be application/json"}
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &ute) && ute.Field == "":
			return &bodyError{"body", "must be a JSON object"}
		case errors.As(err, &ute):
			return &bodyError{ute.Field, "must be a " + ute.Type.String()}
		case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
			return &bodyError{"body", "is not valid JSON"}
		case errors.Is(err, io.EOF):
			return &bodyError{"body", "is empty"}
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return &bodyError{name, "is not a known field"}
		}
		return &bodyError{"body", err.Error()}
	}
	if dec.More() {
		return &bodyError{"body", "must hold one JSON object"}
	}
	return nil
}

func (h *Handler) create(w http.ResponseWriter, r *http.Request) error {
	var req provisioner.CreateRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	v, replayed, err := h.svc.Create(r.Context(), req, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/v1/tenants/"+v.Tenant.ID)
	return writeJSON(w, http.StatusAccepted, viewJSON(v))
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) error {
	v, err := h.svc.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewJSON(v))
}

func (h *Handler) list(w http.ResponseWriter, r *http.Request) error {
	q, err := listQuery(r)
	if err != nil {
		return err
	}
	page, err := h.svc.List(r.Context(), q)
	if err != nil {
		return err
	}
	out := ListJSON{Tenants: make([]TenantJSON, 0, len(page.Tenants)), Next: page.Next}
	for _, t := range page.Tenants {
		out.Tenants = append(out.Tenants, viewJSON(provisioner.View{Tenant: t}))
	}
	return writeJSON(w, http.StatusOK, out)
}

func listQuery(r *http.Request) (registry.ListQuery, error) {
	vals := r.URL.Query()
	for k := range vals {
		switch k {
		case "status", "plan", "model", "after", "limit":
		default:
			return registry.ListQuery{}, &bodyError{k, "is not a known query parameter (status, plan, model, after, limit)"}
		}
	}
	q := registry.ListQuery{Plan: vals.Get("plan"), Model: tenant.Model(vals.Get("model")), After: vals.Get("after")}
	for _, v := range vals["status"] {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				q.Status = append(q.Status, tenant.Status(s))
			}
		}
	}
	if l := vals.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 {
			return q, &provisioner.FieldError{Field: "limit", Reason: fmt.Sprintf("must be 1 to %d", registry.MaxPageSize)}
		}
		q.Limit = n
	}
	return q, nil
}

// PatchRequest is the body of PATCH /v1/tenants/{id}.
type PatchRequest struct {
	Plan *string `json:"plan"`
}

func (h *Handler) patch(w http.ResponseWriter, r *http.Request) error {
	var req PatchRequest
	if err := decode(r, &req); err != nil {
		return err
	}
	if req.Plan == nil {
		return &provisioner.FieldError{Field: "plan", Reason: "is required (only the plan can change)"}
	}
	v, err := h.svc.ChangePlan(r.Context(), r.PathValue("id"), *req.Plan)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewJSON(v))
}

func (h *Handler) action(fn func(ctx context.Context, id string) (provisioner.View, error), status int) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		v, err := fn(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		if status == http.StatusAccepted {
			w.Header().Set("Location", "/v1/tenants/"+v.Tenant.ID)
		}
		return writeJSON(w, status, viewJSON(v))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// TenantJSON is a tenant as the API shows it.
type TenantJSON struct {
	ID        string           `json:"id"`
	Slug      string           `json:"slug"`
	Name      string           `json:"name"`
	Plan      string           `json:"plan"`
	Model     tenant.Model     `json:"model"`
	Status    tenant.Status    `json:"status"`
	Upstream  tenant.Upstream  `json:"upstream,omitzero"`
	Resources tenant.Resources `json:"resources"`
	LastError string           `json:"last_error,omitempty"`
	Revision  int64            `json:"revision"`
	CreatedAt time.Time        `json:"created_at"`
	UpdatedAt time.Time        `json:"updated_at"`
	Saga      *saga.Status     `json:"saga,omitempty"`
}

// ListJSON is a page of tenants.
type ListJSON struct {
	Tenants []TenantJSON `json:"tenants"`
	Next    string       `json:"next,omitempty"`
}

func viewJSON(v provisioner.View) TenantJSON {
	t := v.Tenant
	return TenantJSON{ID: t.ID, Slug: t.Slug, Name: t.Name, Plan: t.Plan, Model: t.Model, Status: t.Status,
		Upstream: t.Upstream, Resources: t.Resources, LastError: t.LastError, Revision: t.Revision,
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt, Saga: v.Saga}
}

// storeUnreachable reports whether err says the database could not be reached (or did not answer in
// time) rather than that the call was wrong: a 503 the client may retry, not a 500.
func storeUnreachable(err error) bool {
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) || pgconn.Timeout(err) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, registry.ErrClosed)
}
