package registrytest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// NewFunc returns a fresh, empty registry for one test; it arranges its own cleanup with t.Cleanup.
type NewFunc func(t *testing.T) registry.Registry

// Run runs the conformance suite against the registries newRegistry makes, one per subtest; the
// subtests run in parallel, so newRegistry must be safe to call concurrently.
func Run(t *testing.T, newRegistry NewFunc) {
	tests := []struct {
		name string
		fn   func(t *testing.T, r registry.Registry)
	}{
		{"CreateThenGetByIDAndSlug", testCreateThenGet},
		{"CreateKeepsASeedStatus", testCreateKeepsSeedStatus},
		{"GetUnknownIsNotFound", testGetUnknown},
		{"CreateRejectsInvalidTenants", testCreateRejectsInvalid},
		{"CreateRejectsATakenIDOrSlug", testCreateRejectsTaken},
		{"DeletedIDAndSlugAreNeverReused", testTombstones},
		{"StatusTransitions", testTransitions},
		{"UpdateRejectsInvalidChanges", testUpdateRejectsInvalid},
		{"UpdateBumpsRevisionAndKeepsCreatedAt", testUpdateBumpsRevision},
		{"UpdatesFromOneReadConflict", testUpdatesFromOneReadConflict},
		{"ConcurrentUpdatesFromOneReadConflict", testConcurrentUpdatesConflict},
		{"ReturnedTenantsAreCopies", testReturnedTenantsAreCopies},
		{"ListPagesInIDOrderWithoutGapsOrDuplicates", testListPaging},
		{"ListFilters", testListFilters},
		{"ListPagingSurvivesConcurrentCreates", testListPagingWithCreates},
		{"AllReturnsEveryTenantAndTheRevision", testAll},
		{"WatchDeliversChangesInRevisionOrder", testWatchOrder},
		{"WatchStartsAfterTheGivenRevision", testWatchFromRevision},
		{"WatchClosesWhenContextEnds", testWatchCloses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // each subtest has a registry of its own
			tt.fn(t, newRegistry(t))
		})
	}
}

// ctxFor returns a context that ends with the test or after a generous timeout.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newTenant returns a valid tenant that is not stored yet.
func newTenant(slug string) tenant.Tenant {
	return tenant.Tenant{
		ID:    tenant.NewID(),
		Slug:  slug,
		Name:  "Tenant " + slug,
		Plan:  "starter",
		Model: tenant.Pool,
	}
}

func mustCreate(t *testing.T, r registry.Registry, tn tenant.Tenant) tenant.Tenant {
	t.Helper()
	created, err := r.Create(ctxFor(t), tn)
	if err != nil {
		t.Fatalf("Create(%s): %v", tn.Slug, err)
	}
	return created
}

func mustUpdate(t *testing.T, r registry.Registry, tn tenant.Tenant) tenant.Tenant {
	t.Helper()
	updated, err := r.Update(ctxFor(t), tn)
	if err != nil {
		t.Fatalf("Update(%s): %v", tn.Slug, err)
	}
	return updated
}

func mustGet(t *testing.T, r registry.Registry, id string) tenant.Tenant {
	t.Helper()
	got, err := r.Get(ctxFor(t), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return got
}

func assertSame(t testing.TB, what string, got, want tenant.Tenant) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func testCreateThenGet(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	in := newTenant("acme")
	in.Model = tenant.Silo
	in.Plan = "enterprise"
	in.Upstream = tenant.Upstream{Cluster: "acme-silo", Endpoints: []tenant.Endpoint{{Host: "10.0.0.7", Port: 8443}}}
	in.Resources = tenant.Resources{Database: "tenant_acme", Domain: "acme.example.com"}
	in.LastError = "previous attempt timed out"
	before := time.Now().Add(-time.Second)

	created := mustCreate(t, r, in)
	if created.Status != tenant.Pending {
		t.Errorf("a new tenant has status %q, want pending", created.Status)
	}
	if created.Revision <= 0 {
		t.Errorf("a new tenant has revision %d, want > 0", created.Revision)
	}
	if created.CreatedAt.Before(before) || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Errorf("timestamps: created %v, updated %v; want now and equal", created.CreatedAt, created.UpdatedAt)
	}
	want := in
	want.Status, want.Revision, want.CreatedAt, want.UpdatedAt = tenant.Pending, created.Revision, created.CreatedAt, created.UpdatedAt
	assertSame(t, "Create returned", created, want)

	byID, err := r.Get(ctx, in.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	assertSame(t, "Get", byID, created)
	bySlug, err := r.GetBySlug(ctx, "acme")
	if err != nil {
		t.Fatalf("GetBySlug: %v", err)
	}
	assertSame(t, "GetBySlug", bySlug, created)
}

func testCreateKeepsSeedStatus(t *testing.T, r registry.Registry) {
	in := newTenant("seeded")
	in.Status = tenant.Active
	if got := mustCreate(t, r, in); got.Status != tenant.Active {
		t.Fatalf("status %q, want the seeded active", got.Status)
	}
	if got := mustGet(t, r, in.ID); got.Status != tenant.Active {
		t.Fatalf("stored status %q, want the seeded active", got.Status)
	}
}

func testGetUnknown(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	mustCreate(t, r, newTenant("known"))
	for _, id := range []string{tenant.NewID(), "not-a-uuid", ""} {
		if _, err := r.Get(ctx, id); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
	}
	for _, slug := range []string{"unknown", "KNOWN", ""} {
		if _, err := r.GetBySlug(ctx, slug); !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("GetBySlug(%q) = %v, want ErrNotFound", slug, err)
		}
	}
}

func testCreateRejectsInvalid(t *testing.T, r registry.Registry) {
	tests := []struct {
		name   string
		change func(*tenant.Tenant)
	}{
		{"reserved slug", func(tn *tenant.Tenant) { tn.Slug = "admin" }},
		{"short slug", func(tn *tenant.Tenant) { tn.Slug = "ab" }},
		{"upper-case slug", func(tn *tenant.Tenant) { tn.Slug = "Acme" }},
		{"slug with a leading hyphen", func(tn *tenant.Tenant) { tn.Slug = "-acme" }},
		{"missing id", func(tn *tenant.Tenant) { tn.ID = "" }},
		{"id that is not a UUID v4", func(tn *tenant.Tenant) { tn.ID = "00000000-0000-1000-8000-000000000000" }},
		{"missing name", func(tn *tenant.Tenant) { tn.Name = "  " }},
		{"missing plan", func(tn *tenant.Tenant) { tn.Plan = "" }},
		{"unknown model", func(tn *tenant.Tenant) { tn.Model = "shared" }},
		{"unknown status", func(tn *tenant.Tenant) { tn.Status = "paused" }},
		{"endpoint without a port", func(tn *tenant.Tenant) {
			tn.Upstream.Endpoints = []tenant.Endpoint{{Host: "10.0.0.1"}}
		}},
	}
	ctx := ctxFor(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newTenant("valid-" + tenant.NewID()[:8])
			tt.change(&in)
			if _, err := r.Create(ctx, in); !errors.Is(err, tenant.ErrInvalid) {
				t.Fatalf("Create = %v, want an error wrapping tenant.ErrInvalid", err)
			}
		})
	}
	if all, _, err := r.All(ctx); err != nil || len(all) != 0 {
		t.Fatalf("after invalid creates: All = %d tenants, %v; want none stored", len(all), err)
	}
}

func testCreateRejectsTaken(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	first := mustCreate(t, r, newTenant("taken"))

	sameSlug := newTenant("taken")
	if _, err := r.Create(ctx, sameSlug); !errors.Is(err, registry.ErrExists) {
		t.Errorf("Create with a taken slug = %v, want ErrExists", err)
	}
	sameID := newTenant("other")
	sameID.ID = first.ID
	if _, err := r.Create(ctx, sameID); !errors.Is(err, registry.ErrExists) {
		t.Errorf("Create with a taken id = %v, want ErrExists", err)
	}
	assertSame(t, "the first tenant after refused creates", mustGet(t, r, first.ID), first)
	if _, err := r.GetBySlug(ctx, "other"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("GetBySlug(other) = %v, want ErrNotFound (the refused create stored nothing)", err)
	}
}

func testTombstones(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	gone := mustCreate(t, r, newTenant("gone"))
	gone.Status = tenant.Deleting
	gone = mustUpdate(t, r, gone)
	gone.Status = tenant.Deleted
	gone = mustUpdate(t, r, gone)

	if _, err := r.Create(ctx, newTenant("gone")); !errors.Is(err, registry.ErrExists) {
		t.Errorf("Create reusing a deleted tenant's slug = %v, want ErrExists", err)
	}
	reuseID := newTenant("fresh")
	reuseID.ID = gone.ID
	if _, err := r.Create(ctx, reuseID); !errors.Is(err, registry.ErrExists) {
		t.Errorf("Create reusing a deleted tenant's id = %v, want ErrExists", err)
	}
	// The tombstone stays readable, by id and slug, and nothing can change it.
	assertSame(t, "tombstone by id", mustGet(t, r, gone.ID), gone)
	bySlug, err := r.GetBySlug(ctx, "gone")
	if err != nil {
		t.Fatalf("GetBySlug of a tombstone: %v", err)
	}
	assertSame(t, "tombstone by slug", bySlug, gone)
	renamed := gone
	renamed.Name = "Back from the dead"
	var transition *tenant.TransitionError
	if _, err := r.Update(ctx, renamed); !errors.As(err, &transition) {
		t.Errorf("Update of a deleted tenant = %v, want a *tenant.TransitionError", err)
	}
}

func testTransitions(t *testing.T, r registry.Registry) {
	tests := []struct {
		from, to tenant.Status
		allowed  bool
	}{
		{tenant.Pending, tenant.Provisioning, true},
		{tenant.Pending, tenant.Failed, true},
		{tenant.Pending, tenant.Deleting, true},
		{tenant.Provisioning, tenant.Active, true},
		{tenant.Active, tenant.Suspended, true},
		{tenant.Active, tenant.Provisioning, true},
		{tenant.Suspended, tenant.Active, true},
		{tenant.Failed, tenant.Provisioning, true},
		{tenant.Deleting, tenant.Deleted, true},
		{tenant.Active, tenant.Active, true}, // an update of other fields
		{tenant.Pending, tenant.Active, false},
		{tenant.Active, tenant.Pending, false},
		{tenant.Failed, tenant.Pending, false},
		{tenant.Suspended, tenant.Pending, false},
		{tenant.Suspended, tenant.Provisioning, false},
		{tenant.Active, tenant.Deleted, false},
		{tenant.Deleted, tenant.Active, false},
		{tenant.Deleted, tenant.Pending, false},
		{tenant.Deleted, tenant.Deleting, false},
		{tenant.Deleted, tenant.Deleted, false},
		{tenant.Active, "paused", false},
	}
	ctx := ctxFor(t)
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%s_to_%s", tt.from, tt.to), func(t *testing.T) {
			in := newTenant(fmt.Sprintf("transition-%d", i))
			in.Status = tt.from
			stored := mustCreate(t, r, in)
			next := stored
			next.Status = tt.to
			next.Name = "renamed"
			got, err := r.Update(ctx, next)
			if tt.allowed {
				if err != nil {
					t.Fatalf("Update %s -> %s: %v, want allowed", tt.from, tt.to, err)
				}
				if got.Status != tt.to || mustGet(t, r, in.ID).Status != tt.to {
					t.Fatalf("after %s -> %s the status is %q", tt.from, tt.to, got.Status)
				}
				return
			}
			var transition *tenant.TransitionError
			if !errors.As(err, &transition) {
				t.Fatalf("Update %s -> %s = %v, want a *tenant.TransitionError", tt.from, tt.to, err)
			}
			assertSame(t, "the tenant after a refused transition", mustGet(t, r, in.ID), stored)
		})
	}
}

func testUpdateRejectsInvalid(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	stored := mustCreate(t, r, newTenant("steady"))
	tests := []struct {
		name   string
		change func(*tenant.Tenant)
		want   error
	}{
		{"slug change", func(tn *tenant.Tenant) { tn.Slug = "renamed" }, tenant.ErrInvalid},
		{"model change", func(tn *tenant.Tenant) { tn.Model = tenant.Silo }, tenant.ErrInvalid},
		{"empty name", func(tn *tenant.Tenant) { tn.Name = "" }, tenant.ErrInvalid},
		{"bad endpoint", func(tn *tenant.Tenant) { tn.Upstream.Endpoints = []tenant.Endpoint{{Port: 80}} }, tenant.ErrInvalid},
		{"unknown id", func(tn *tenant.Tenant) { tn.ID = tenant.NewID() }, registry.ErrNotFound},
		{"malformed id", func(tn *tenant.Tenant) { tn.ID = "nope" }, registry.ErrNotFound},
		{"stale revision", func(tn *tenant.Tenant) { tn.Revision-- }, registry.ErrConflict},
		{"no revision", func(tn *tenant.Tenant) { tn.Revision = 0 }, registry.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := stored
			tt.change(&next)
			if _, err := r.Update(ctx, next); !errors.Is(err, tt.want) {
				t.Fatalf("Update = %v, want %v", err, tt.want)
			}
			assertSame(t, "the tenant after a refused update", mustGet(t, r, stored.ID), stored)
		})
	}
}

func testUpdateBumpsRevision(t *testing.T, r registry.Registry) {
	stored := mustCreate(t, r, newTenant("bumped"))
	next := stored
	next.Name = "Bumped Inc."
	next.Plan = "professional"
	next.Status = tenant.Provisioning
	next.Upstream = tenant.Upstream{Cluster: "pool"}
	next.Resources = tenant.Resources{Schema: "tenant_bumped"}
	next.LastError = "dns: timeout"
	next.CreatedAt = time.Unix(0, 0) // ignored: creation time never changes
	updated := mustUpdate(t, r, next)
	if updated.Revision <= stored.Revision {
		t.Errorf("revision %d after update, want > %d", updated.Revision, stored.Revision)
	}
	if !updated.CreatedAt.Equal(stored.CreatedAt) {
		t.Errorf("created_at changed from %v to %v", stored.CreatedAt, updated.CreatedAt)
	}
	if updated.UpdatedAt.Before(stored.UpdatedAt) {
		t.Errorf("updated_at went back from %v to %v", stored.UpdatedAt, updated.UpdatedAt)
	}
	want := next
	want.Revision, want.CreatedAt, want.UpdatedAt = updated.Revision, stored.CreatedAt, updated.UpdatedAt
	assertSame(t, "Update returned", updated, want)
	assertSame(t, "Get after Update", mustGet(t, r, stored.ID), updated)
}

func testUpdatesFromOneReadConflict(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	stored := mustCreate(t, r, newTenant("contended"))
	a, b := stored, stored
	a.Name = "Writer A"
	b.Name = "Writer B"
	won := mustUpdate(t, r, a)
	if _, err := r.Update(ctx, b); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("second update from the same read = %v, want ErrConflict", err)
	}
	assertSame(t, "the tenant after the conflict", mustGet(t, r, stored.ID), won)
	// Re-reading and retrying succeeds.
	b = won
	b.Name = "Writer B"
	if got := mustUpdate(t, r, b); got.Name != "Writer B" {
		t.Fatalf("retry after re-read: name %q", got.Name)
	}
}

func testConcurrentUpdatesConflict(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	stored := mustCreate(t, r, newTenant("raced"))
	const writers = 8
	errs := make(chan error, writers)
	start := make(chan struct{})
	for i := range writers {
		go func() {
			next := stored
			next.Name = fmt.Sprintf("Writer %d", i)
			<-start
			_, err := r.Update(ctx, next)
			errs <- err
		}()
	}
	close(start)
	var won, conflicts int
	for range writers {
		switch err := <-errs; {
		case err == nil:
			won++
		case errors.Is(err, registry.ErrConflict):
			conflicts++
		default:
			t.Errorf("concurrent update: %v", err)
		}
	}
	if won != 1 || conflicts != writers-1 {
		t.Fatalf("%d updates won and %d conflicted, want 1 and %d", won, conflicts, writers-1)
	}
}

func testReturnedTenantsAreCopies(t *testing.T, r registry.Registry) {
	ctx := ctxFor(t)
	in := newTenant("copied")
	in.Model = tenant.Bridge
	in.Upstream = tenant.Upstream{Cluster: "c", Endpoints: []tenant.Endpoint{{Host: "10.0.0.1", Port: 80}}}
	created := mustCreate(t, r, in)
	in.Upstream.Endpoints[0].Host = "caller-changed-input"
	created.Upstream.Endpoints[0].Host = "caller-changed-result"
	got := mustGet(t, r, in.ID)
	if h := got.Upstream.Endpoints[0].Host; h != "10.0.0.1" {
		t.Fatalf("stored endpoint host %q: the registry shares memory with its callers", h)
	}
	got.Upstream.Endpoints[0].Host = "caller-changed-get"
	all, _, err := r.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all[0].Upstream.Endpoints[0].Host = "caller-changed-all"
	page, err := r.List(ctx, registry.ListQuery{})
	if err != nil {
		t.Fatal(err)
	}
	page.Tenants[0].Upstream.Endpoints[0].Host = "caller-changed-list"
	if h := mustGet(t, r, in.ID).Upstream.Endpoints[0].Host; h != "10.0.0.1" {
		t.Fatalf("stored endpoint host %q: the registry shares memory with its callers", h)
	}
}
