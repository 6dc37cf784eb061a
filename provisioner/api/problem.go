package api

import (
	"encoding/json"
	"net/http"
)

// Problem is an RFC 9457 problem detail.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// InvalidParams names the fields at fault (the extension member of RFC 9457's example).
	InvalidParams []InvalidParam `json:"invalid-params,omitempty"`
}

// InvalidParam is one field at fault.
type InvalidParam struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// ContentTypeProblem is the media type of problem details.
const ContentTypeProblem = "application/problem+json"

// Problem types.
const (
	typeInvalid      = "https://tenantgate.dev/problems/invalid-request"
	typeUnauthorized = "https://tenantgate.dev/problems/unauthorized"
	typeForbidden    = "https://tenantgate.dev/problems/forbidden"
	typeNotFound     = "https://tenantgate.dev/problems/not-found"
	typeConflict     = "https://tenantgate.dev/problems/conflict"
	typeIdempotency  = "https://tenantgate.dev/problems/idempotency-key-reused"
	typeInternal     = "https://tenantgate.dev/problems/internal"
	typeMethod       = "https://tenantgate.dev/problems/method-not-allowed"
	typeUnavailable  = "https://tenantgate.dev/problems/unavailable"
)

// retryAfterSeconds is what a 503 tells the client to wait before trying again.
const retryAfterSeconds = "5"

func writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	p.Instance = r.URL.Path
	w.Header().Set("Content-Type", ContentTypeProblem)
	w.Header().Set("Cache-Control", "no-store")
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterSeconds)
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func fieldProblem(status int, field, reason string) Problem {
	return Problem{Type: typeInvalid, Status: status, Title: "Invalid request",
		Detail: field + ": " + reason, InvalidParams: []InvalidParam{{Name: field, Reason: reason}}}
}
