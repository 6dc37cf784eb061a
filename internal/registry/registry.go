package registry

import (
	"context"
	"errors"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Errors every implementation returns, for errors.Is.
var (
	// ErrNotFound: no tenant with that id or slug.
	ErrNotFound = errors.New("tenant not found")
	// ErrConflict: the tenant changed since the caller read it (its Revision no longer matches).
	ErrConflict = errors.New("tenant changed concurrently")
	// ErrExists: the id or slug is taken, now or by a deleted tenant (neither is ever reused).
	ErrExists = errors.New("tenant id or slug already used")
	// ErrClosed: the registry was closed.
	ErrClosed = errors.New("registry closed")
)

// Registry stores tenants. Implementations are safe for concurrent use.
type Registry interface {
	// Get returns the tenant with the given id, deleted tenants (tombstones) included.
	Get(ctx context.Context, id string) (tenant.Tenant, error)
	// GetBySlug returns the tenant holding the slug, deleted tenants included.
	GetBySlug(ctx context.Context, slug string) (tenant.Tenant, error)
	// List returns one page of tenants ordered by id.
	List(ctx context.Context, q ListQuery) (Page, error)
	// Create stores a new tenant in status pending (or the status it carries, for seeding) and
	// returns it with its revision and timestamps set.
	Create(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error)
	// Update stores t if t.Revision is the stored revision (else ErrConflict) and the status change
	// is allowed by tenant.CheckTransition. Id, slug, model and creation time never change.
	Update(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error)
	// All returns every tenant and the registry revision they are consistent with.
	All(ctx context.Context) ([]tenant.Tenant, int64, error)
	// Watch sends, in revision order, the latest state of every tenant changed after revision
	// `after`, until ctx ends; then it closes the channel. Intermediate states of a tenant that
	// changed several times may be collapsed into its latest state; no latest state is ever missed,
	// even across lost connections.
	Watch(ctx context.Context, after int64) (<-chan Change, error)
	// Ping reports whether the registry's backing store answers.
	Ping(ctx context.Context) error
}

// Change is one tenant's latest state, as the change feed delivers it.
type Change struct {
	Tenant   tenant.Tenant
	Revision int64
}

// ListQuery filters and pages a List call.
type ListQuery struct {
	Status []tenant.Status // empty: all statuses
	Plan   string
	Model  tenant.Model
	After  string // page token: return ids greater than this
	Limit  int    // 1..MaxPageSize, default DefaultPageSize
}

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// Page is one page of a List.
type Page struct {
	Tenants []tenant.Tenant
	Next    string // empty on the last page
}

// Normalize applies defaults and bounds to a ListQuery.
func (q ListQuery) Normalize() ListQuery {
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	if q.Limit > MaxPageSize {
		q.Limit = MaxPageSize
	}
	return q
}

// Matches reports whether t passes the query's filters (not its paging).
func (q ListQuery) Matches(t *tenant.Tenant) bool {
	if q.Plan != "" && t.Plan != q.Plan {
		return false
	}
	if q.Model != "" && t.Model != q.Model {
		return false
	}
	if len(q.Status) == 0 {
		return true
	}
	for _, s := range q.Status {
		if t.Status == s {
			return true
		}
	}
	return false
}

// checkUpdate validates an update of stored into next: immutable fields and the status transition.
func checkUpdate(stored, next *tenant.Tenant) error {
	if next.Slug != stored.Slug || next.Model != stored.Model {
		return errors.Join(tenant.ErrInvalid, errors.New("slug and model cannot change"))
	}
	if err := tenant.CheckTransition(stored.Status, next.Status); err != nil {
		return err
	}
	return next.Validate()
}
