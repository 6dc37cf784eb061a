package telemetry

import (
	"container/heap"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// topTenants estimates the busiest tenants of one component with the Space-Saving algorithm: it
// tracks at most capacity tenants, and a newcomer replaces the least counted one, inheriting its
// count as its error (its true count lies between count-err and count). Every tenant with more
// than total/capacity requests is guaranteed to be tracked. Memory is bounded by capacity
// (about 100 bytes a tenant) whatever the number of tenants.
type topTenants struct {
	mu       sync.Mutex
	capacity int
	byID     map[string]*topEntry
	order    topHeap // min-heap by count
}

type topEntry struct {
	id    string
	count uint64
	err   uint64
	index int
}

func newTopTenants(n int) *topTenants {
	c := max(10*n, 64)
	return &topTenants{capacity: c, byID: make(map[string]*topEntry, c)}
}

func (t *topTenants) add(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byID[id]; ok {
		e.count++
		heap.Fix(&t.order, e.index)
		return
	}
	if len(t.order) < t.capacity {
		e := &topEntry{id: id, count: 1}
		t.byID[id] = e
		heap.Push(&t.order, e)
		return
	}
	min := t.order[0]
	delete(t.byID, min.id)
	min.id, min.err = id, min.count
	min.count++
	t.byID[id] = min
	heap.Fix(&t.order, 0)
}

// top returns the n tenants with the highest guaranteed count (count-err), most first; a tenant
// just admitted in place of another ranks by what it surely sent, not by what it inherited.
func (t *topTenants) top(n int) []topEntry {
	t.mu.Lock()
	out := make([]topEntry, 0, len(t.order))
	for _, e := range t.order {
		out = append(out, *e)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		gi, gj := out[i].count-out[i].err, out[j].count-out[j].err
		if gi != gj {
			return gi > gj
		}
		return out[i].id < out[j].id
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

type topHeap []*topEntry

func (h topHeap) Len() int           { return len(h) }
func (h topHeap) Less(i, j int) bool { return h[i].count < h[j].count }
func (h topHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *topHeap) Push(x any) {
	e := x.(*topEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *topHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// topCollector exposes the busiest tenants of each component as gauges labelled with the tenant id:
// the opt-in per-tenant view (telemetry.metrics.top_tenants).
type topCollector struct {
	n     int
	byCmp map[string]*topTenants // component -> sketch; fixed at construction
	desc  *prometheus.Desc
}

func newTopCollector(n int, components ...string) *topCollector {
	c := &topCollector{
		n:     n,
		byCmp: make(map[string]*topTenants, len(components)),
		desc: prometheus.NewDesc("tenantgate_top_tenant_requests",
			"Requests of the busiest tenants since start, by component: a lower bound, the true count may exceed it by up to tenantgate_top_tenant_requests_error. Only with telemetry.metrics.top_tenants set.",
			[]string{"component", "tenant_id"}, nil),
	}
	for _, name := range components {
		c.byCmp[name] = newTopTenants(n)
	}
	return c
}

var topErrorDesc = prometheus.NewDesc("tenantgate_top_tenant_requests_error",
	"How many more requests than tenantgate_top_tenant_requests the same tenant may have sent.",
	[]string{"component", "tenant_id"}, nil)

func (c *topCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	ch <- topErrorDesc
}

func (c *topCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range c.byCmp {
		for _, e := range t.top(c.n) {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(e.count-e.err), name, e.id)
			ch <- prometheus.MustNewConstMetric(topErrorDesc, prometheus.GaugeValue, float64(e.err), name, e.id)
		}
	}
}
