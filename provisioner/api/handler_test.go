package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/provisioner"
)

// failingService answers every call with the same error, standing in for a service whose database
// is down.
type failingService struct{ err error }

func (f failingService) Create(context.Context, provisioner.CreateRequest, string) (provisioner.View, bool, error) {
	return provisioner.View{}, false, f.err
}
func (f failingService) Get(context.Context, string) (provisioner.View, error) {
	return provisioner.View{}, f.err
}
func (f failingService) List(context.Context, registry.ListQuery) (registry.Page, error) {
	return registry.Page{}, f.err
}
func (f failingService) ChangePlan(context.Context, string, string) (provisioner.View, error) {
	return provisioner.View{}, f.err
}
func (f failingService) Suspend(context.Context, string) (provisioner.View, error) {
	return provisioner.View{}, f.err
}
func (f failingService) Resume(context.Context, string) (provisioner.View, error) {
	return provisioner.View{}, f.err
}
func (f failingService) Retry(context.Context, string) (provisioner.View, error) {
	return provisioner.View{}, f.err
}
func (f failingService) Delete(context.Context, string) (provisioner.View, error) {
	return provisioner.View{}, f.err
}

type acceptAll struct{}

func (acceptAll) VerifyAdmin(context.Context, string) (string, error) { return "admin", nil }

func TestHandler_UnreachableStoreIs503WithRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
	}{
		{"connect error", fmt.Errorf("get tenant: %w", &pgconn.ConnectError{}), http.StatusServiceUnavailable},
		{"deadline", fmt.Errorf("list tenants: %w", context.DeadlineExceeded), http.StatusServiceUnavailable},
		{"registry closed", registry.ErrClosed, http.StatusServiceUnavailable},
		{"any other failure", errors.New("constraint violated"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := NewHandler(failingService{err: tt.err}, acceptAll{}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/v1/tenants/3f1c2a9e-6b7d-4c1e-9a2f-0d5e8b7c6a41", nil)
			req.Header.Set("Authorization", "Bearer token")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("Content-Type"); got != ContentTypeProblem {
				t.Errorf("content type %q", got)
			}
			retry := rec.Header().Get("Retry-After")
			if (tt.wantStatus == http.StatusServiceUnavailable) != (retry != "") {
				t.Errorf("Retry-After = %q for status %d", retry, rec.Code)
			}
			var p Problem
			if err := json.NewDecoder(rec.Body).Decode(&p); err != nil || p.Status != tt.wantStatus {
				t.Errorf("problem body %+v (%v)", p, err)
			}
		})
	}
}
