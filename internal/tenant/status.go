package tenant

import "fmt"

// Status is where a tenant is in its lifecycle.
type Status string

// The statuses of a tenant.
const (
	Pending      Status = "pending"
	Provisioning Status = "provisioning"
	Active       Status = "active"
	Suspended    Status = "suspended"
	Failed       Status = "failed"
	Deleting     Status = "deleting"
	Deleted      Status = "deleted"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{Pending, Provisioning, Active, Suspended, Failed, Deleting, Deleted}

// transitions is the lifecycle: the statuses each status may move to. Deleted is terminal and nothing
// moves back to pending. A status may always be written again unchanged (an update of other fields).
var transitions = map[Status][]Status{
	Pending:      {Provisioning, Failed, Deleting},
	Provisioning: {Active, Failed, Deleting},
	Active:       {Suspended, Provisioning, Deleting},
	Suspended:    {Active, Deleting},
	Failed:       {Provisioning, Deleting},
	Deleting:     {Deleted, Failed},
	Deleted:      {},
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// Terminal reports whether nothing can follow s.
func (s Status) Terminal() bool { return s == Deleted }

// TransitionError is returned for a status change the lifecycle does not allow.
type TransitionError struct {
	From, To Status
}

func (e *TransitionError) Error() string {
	return fmt.Sprintf("tenant status cannot move from %q to %q", e.From, e.To)
}

// CheckTransition returns nil when a tenant in status from may move to status to, and a
// *TransitionError otherwise. It is the one place the lifecycle is enforced.
func CheckTransition(from, to Status) error {
	if !from.Valid() || !to.Valid() {
		return &TransitionError{From: from, To: to}
	}
	if from == to && !from.Terminal() {
		return nil
	}
	for _, next := range transitions[from] {
		if next == to {
			return nil
		}
	}
	return &TransitionError{From: from, To: to}
}
