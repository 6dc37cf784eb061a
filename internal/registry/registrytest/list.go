package registrytest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// seedMix creates n tenants spread over plans, models and statuses, and returns them.
func seedMix(t *testing.T, r registry.Registry, n int) []tenant.Tenant {
	t.Helper()
	plans := []string{"free", "starter", "professional"}
	statuses := []tenant.Status{tenant.Pending, tenant.Active, tenant.Suspended, tenant.Failed, tenant.Deleted}
	out := make([]tenant.Tenant, 0, n)
	for i := range n {
		in := newTenant(fmt.Sprintf("mix-%03d", i))
		in.Plan = plans[i%len(plans)]
		in.Model = tenant.Models[i%len(tenant.Models)]
		in.Status = statuses[i%len(statuses)]
		out = append(out, mustCreate(t, r, in))
	}
	return out
}

// listAll pages through q with the given page size and returns every tenant in the order received,
// checking each page's size and token on the way.
func listAll(t *testing.T, r registry.Registry, q registry.ListQuery) []tenant.Tenant {
	t.Helper()
	ctx := ctxFor(t)
	limit := q.Normalize().Limit
	var out []tenant.Tenant
	for pages := 0; ; pages++ {
		if pages > 10000 {
			t.Fatal("List never returned a last page")
		}
		page, err := r.List(ctx, q)
		if err != nil {
			t.Fatalf("List(%+v): %v", q, err)
		}
		if len(page.Tenants) > limit {
			t.Fatalf("page of %d tenants, limit %d", len(page.Tenants), limit)
		}
		out = append(out, page.Tenants...)
		if page.Next == "" {
			return out
		}
		if len(page.Tenants) != limit {
			t.Fatalf("a page of %d tenants (limit %d) says another page follows", len(page.Tenants), limit)
		}
		if page.Next != page.Tenants[len(page.Tenants)-1].ID {
			t.Fatalf("page token %q is not the last id on the page", page.Next)
		}
		q.After = page.Next
	}
}

func ids(tenants []tenant.Tenant) []string {
	out := make([]string, len(tenants))
	for i := range tenants {
		out[i] = tenants[i].ID
	}
	return out
}

// expected returns the ids of the tenants q matches, in id order.
func expected(all []tenant.Tenant, q registry.ListQuery) []string {
	var out []string
	for i := range all {
		if q.Matches(&all[i]) {
			out = append(out, all[i].ID)
		}
	}
	slices.Sort(out)
	return out
}

func testListPaging(t *testing.T, r registry.Registry) {
	all := seedMix(t, r, 57)
	want := expected(all, registry.ListQuery{})
	for _, size := range []int{0, 1, 7, 19, 50, 57, 58, registry.MaxPageSize, registry.MaxPageSize + 1} {
		t.Run(fmt.Sprintf("page size %d", size), func(t *testing.T) {
			got := ids(listAll(t, r, registry.ListQuery{Limit: size}))
			if !slices.Equal(got, want) {
				t.Fatalf("paging by %d returned %d ids %v,\nwant %d ids in id order %v", size, len(got), got, len(want), want)
			}
		})
	}
	t.Run("default page size", func(t *testing.T) {
		page, err := r.List(ctxFor(t), registry.ListQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Tenants) != registry.DefaultPageSize || page.Next == "" {
			t.Fatalf("first default page: %d tenants, next %q; want %d and a token", len(page.Tenants), page.Next, registry.DefaultPageSize)
		}
	})
	t.Run("returns whole tenants", func(t *testing.T) {
		page, err := r.List(ctxFor(t), registry.ListQuery{Limit: registry.MaxPageSize})
		if err != nil {
			t.Fatal(err)
		}
		for _, got := range page.Tenants {
			assertSame(t, "listed tenant", got, mustGet(t, r, got.ID))
		}
	})
	t.Run("past the last id", func(t *testing.T) {
		page, err := r.List(ctxFor(t), registry.ListQuery{After: want[len(want)-1]})
		if err != nil || len(page.Tenants) != 0 || page.Next != "" {
			t.Fatalf("List after the last id = %d tenants, next %q, %v; want an empty last page", len(page.Tenants), page.Next, err)
		}
	})
}

func testListFilters(t *testing.T, r registry.Registry) {
	all := seedMix(t, r, 40)
	tests := []struct {
		name string
		q    registry.ListQuery
	}{
		{"one status", registry.ListQuery{Status: []tenant.Status{tenant.Active}}},
		{"two statuses", registry.ListQuery{Status: []tenant.Status{tenant.Active, tenant.Suspended}}},
		{"tombstones", registry.ListQuery{Status: []tenant.Status{tenant.Deleted}}},
		{"a status nobody has", registry.ListQuery{Status: []tenant.Status{tenant.Deleting}}},
		{"plan", registry.ListQuery{Plan: "professional"}},
		{"unknown plan", registry.ListQuery{Plan: "platinum"}},
		{"model", registry.ListQuery{Model: tenant.Silo}},
		{"plan and model", registry.ListQuery{Plan: "free", Model: tenant.Bridge}},
		{"status, plan and model", registry.ListQuery{
			Status: []tenant.Status{tenant.Active, tenant.Pending, tenant.Failed}, Plan: "starter", Model: tenant.Pool,
		}},
	}
	for _, tt := range tests {
		for _, size := range []int{3, registry.MaxPageSize} {
			t.Run(fmt.Sprintf("%s by %d", tt.name, size), func(t *testing.T) {
				q := tt.q
				q.Limit = size
				got := ids(listAll(t, r, q))
				want := expected(all, tt.q)
				if !slices.Equal(got, want) {
					t.Fatalf("List(%+v) = %v, want %v", q, got, want)
				}
			})
		}
	}
	// The suite's own data must exercise the filters: each filter above keeps some tenants and drops
	// others, except the ones meant to match nothing.
	if n := len(expected(all, registry.ListQuery{Plan: "free", Model: tenant.Bridge})); n == 0 || n == len(all) {
		t.Fatalf("seed data does not exercise the plan and model filter (%d of %d match)", n, len(all))
	}
}

func testListPagingWithCreates(t *testing.T, r registry.Registry) {
	before := seedMix(t, r, 20)
	q := registry.ListQuery{Limit: 6}
	ctx := ctxFor(t)
	seen := map[string]int{}
	var added []tenant.Tenant
	for i := 0; ; i++ {
		page, err := r.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, tn := range page.Tenants {
			seen[tn.ID]++
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
		// A tenant created between pages lands before or after the cursor; either way paging goes on.
		added = append(added, mustCreate(t, r, newTenant(fmt.Sprintf("late-%d", i))))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("tenant %s listed %d times", id, n)
		}
	}
	for _, tn := range before {
		if seen[tn.ID] != 1 {
			t.Errorf("tenant %s, there before paging began, was not listed", tn.ID)
		}
	}
	if len(added) == 0 {
		t.Fatal("no tenant was created between pages")
	}
}
