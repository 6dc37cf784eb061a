package saga

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Kind is what a saga does to its tenant.
type Kind string

// The saga kinds.
const (
	Create Kind = "create"
	Delete Kind = "delete"
	Update Kind = "update"
)

// State is where a saga is.
type State string

// The saga states. Running and Compensating are in flight; Done and Failed are final.
const (
	Running      State = "running"
	Compensating State = "compensating"
	Done         State = "done"
	Failed       State = "failed"
)

// InFlight reports whether a worker still has work to do on a saga in state s.
func (s State) InFlight() bool { return s == Running || s == Compensating }

// Spec is the tenant a saga works on, as the API asked for it.
type Spec struct {
	TenantID   string          `json:"tenant_id"`
	Slug       string          `json:"slug"`
	Name       string          `json:"name"`
	Plan       string          `json:"plan"`
	Model      tenant.Model    `json:"model"`
	AdminEmail string          `json:"admin_email"`
	Upstream   tenant.Upstream `json:"upstream,omitzero"`
}

// Step is one unit of a saga. Do and Undo must both be idempotent: either may be run again after a
// crash at any point, and Undo may run for a Do that never started or only half ran. A step derives
// the names of what it makes from the Spec, never from chance, so that Undo finds them.
type Step interface {
	Name() string
	Do(ctx context.Context, r *Run) error
	Undo(ctx context.Context, r *Run) error
}

// Run is a step's view of its saga.
type Run struct {
	SagaID    string
	Kind      Kind
	Spec      Spec
	Attempt   int    // 1 for a step's first attempt
	LastError string // why the saga is compensating, for the undo that reports it
	made      map[string]json.RawMessage
}

// Record stores what the step made under its name; it is written to Postgres with the step's end.
func (r *Run) Record(step string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if r.made == nil {
		r.made = map[string]json.RawMessage{}
	}
	r.made[step] = raw
	return nil
}

// Made reads what a step recorded; false when it recorded nothing.
func (r *Run) Made(step string, v any) (bool, error) {
	raw, ok := r.made[step]
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(raw, v)
}

// Forget drops what a step recorded (its undo removed it).
func (r *Run) Forget(step string) { delete(r.made, step) }

// Plan is the steps of one saga: their names in order, and the pivot. Steps before the pivot are
// compensated (undone in reverse) when one fails for good; the pivot and the steps after it only go
// forward, and when one of them gives up the saga fails without compensation (Catalog.GaveUp).
type Plan struct {
	Steps []string
	Pivot int
}

// Catalog knows the steps: which a saga runs, and what to do when one gives up.
type Catalog interface {
	// Plan returns the steps of a new saga of kind k for spec.
	Plan(k Kind, spec Spec) (Plan, error)
	// Step returns the step of that name.
	Step(name string) (Step, bool)
	// GaveUp is called once when a step at or after the pivot fails for good.
	GaveUp(ctx context.Context, r *Run, step string, err error) error
}

// Hook observes every step action; an error it returns fails the action. Fault-injection tests use
// it to fail a step or to kill the process in the middle of one.
type Hook func(ctx context.Context, ev Event) error

// Event is one moment of a step action.
type Event struct {
	SagaID   string
	TenantID string
	Kind     Kind
	Step     string
	Action   Action
	Phase    Phase
	Attempt  int
}

// Action is do or undo.
type Action string

// Phase is before or after the step's own work.
type Phase string

// Actions and phases.
const (
	DoAction   Action = "do"
	UndoAction Action = "undo"
	Before     Phase  = "before"
	After      Phase  = "after"
)

// Status is a saga as the API shows it.
type Status struct {
	ID        string    `json:"id"`
	Kind      Kind      `json:"kind"`
	State     State     `json:"state"`
	Steps     []string  `json:"steps"`
	Step      int       `json:"step"`
	Attempt   int       `json:"attempt"`
	LastError string    `json:"last_error,omitempty"`
	NextRunAt time.Time `json:"next_run_at"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Spec is the tenant as the saga started with it (it holds the admin email: not for display).
	Spec Spec `json:"-"`
}

// Errors.
var (
	// ErrInFlight: the tenant already has a saga in flight.
	ErrInFlight = errors.New("a saga is already in flight for this tenant")
	// ErrNotFound: no saga for the tenant.
	ErrNotFound = errors.New("saga not found")
	// errLeaseLost: another replica holds the saga now; this one must stop touching it.
	errLeaseLost = errors.New("saga lease lost")
)
