package telemetry

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTopTenants_FindsTheBusiestWithinBoundedMemory: among many tenants sending a little, the few
// heavy ones are reported, in order, and the sketch never holds more than its capacity.
func TestTopTenants_FindsTheBusiestWithinBoundedMemory(t *testing.T) {
	top := newTopTenants(3)
	heavy := map[string]int{"heavy-a": 900, "heavy-b": 600, "heavy-c": 300}
	for round := range 1000 {
		for id, n := range heavy {
			if round < n {
				top.add(id)
			}
		}
		for k := range 3 {
			top.add(fmt.Sprintf("light-%d-%d", round, k)) // 3,000 tenants seen once
		}
	}
	if len(top.byID) > top.capacity || len(top.order) > top.capacity {
		t.Fatalf("sketch holds %d tenants, capacity %d", len(top.byID), top.capacity)
	}
	got := top.top(3)
	want := []string{"heavy-a", "heavy-b", "heavy-c"}
	for i := range want {
		if got[i].id != want[i] {
			t.Fatalf("top = %+v, want %v", got, want)
		}
		// The true count lies between count-err and count.
		if got[i].count < uint64(heavy[want[i]]) || got[i].count-got[i].err > uint64(heavy[want[i]]) {
			t.Errorf("%s: count %d (error %d) does not bound the true %d", got[i].id, got[i].count, got[i].err, heavy[want[i]])
		}
	}
}

// TestTopCollector_ExposesOnlyTopN: the opt-in view has at most N tenant series per component.
func TestTopCollector_ExposesOnlyTopN(t *testing.T) {
	c := newTopCollector(2, "authz", "ratelimit")
	for i := range 10 {
		for range i + 1 {
			c.byCmp["authz"].add(fmt.Sprintf("t%d", i))
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	n, err := testutil.GatherAndCount(reg, "tenantgate_top_tenant_requests")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d tenant series, want 2", n)
	}
	got := c.byCmp["authz"].top(2)
	if got[0].id != "t9" || got[1].id != "t8" {
		t.Errorf("top = %+v, want t9, t8", got)
	}
}
