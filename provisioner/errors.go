package provisioner

import (
	"errors"
	"fmt"
)

// Errors the API maps to responses.
var (
	// ErrNotFound: no such tenant.
	ErrNotFound = errors.New("tenant not found")
	// ErrConflict: the request does not fit the tenant's state (a saga in flight, a status that
	// cannot move that way, a slug taken).
	ErrConflict = errors.New("conflict")
	// ErrIdempotencyMismatch: the Idempotency-Key was used before with another body.
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
)

// FieldError is a request field that is invalid, and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ConflictError says why a request conflicts with the tenant's state.
type ConflictError struct {
	Field  string // the field at fault, if one is
	Reason string
}

func (e *ConflictError) Error() string { return e.Reason }

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

func conflict(field, format string, args ...any) error {
	return &ConflictError{Field: field, Reason: fmt.Sprintf(format, args...)}
}
