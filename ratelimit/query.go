package ratelimit

import (
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// Descriptor entry keys (DESIGN.md): tenant_id is required, endpoint (a route name) optional.
const (
	entryTenant   = "tenant_id"
	entryEndpoint = "endpoint"
)

// Bounds on values taken from a request, so that they cannot grow keys without limit.
const (
	maxEndpointLen = 200
	longEndpoint   = "_long"
	maxHits        = 1 << 32
)

// query is one request turned into counters: what the store is asked.
type query struct {
	Tenant   string // the counter identity (a tenant id, or unknownTenant)
	Plan     *plan
	Counters []counter
	Descs    []descriptor // one per request descriptor, in order
	// Refuse: the request names more than one tenant; it is refused without counting.
	Refuse bool

	// Room for the slices above (and the decision's states) for a request of a few descriptors
	// and windows, so that a query is one allocation.
	descBuf    [2]descriptor
	counterBuf [4]counter
	indexBuf   [4]int
	stateBuf   [4]state
	indexUsed  int
}

// indices returns room for n counter indices.
func (q *query) indices(n int) []int {
	if q.indexUsed+n > len(q.indexBuf) {
		return make([]int, n)
	}
	s := q.indexBuf[q.indexUsed : q.indexUsed+n : q.indexUsed+n]
	q.indexUsed += n
	return s
}

// states returns room for the state of every counter.
func (q *query) states() []state {
	if len(q.Counters) > len(q.stateBuf) {
		return make([]state, len(q.Counters))
	}
	return q.stateBuf[:len(q.Counters)]
}

// descriptor is one request descriptor: ours or not, and the counters (indices) of its windows.
type descriptor struct {
	Ours     bool
	Endpoint string
	Counters []int
}

// parse turns a request of our domain into a query: each descriptor of ours resolves its tenant's
// plan (from the registry, not the request) and becomes one counter per window; descriptors naming
// the same counter share it, their hits added.
func (l *Limiter) parse(req *rlsv3.RateLimitRequest) *query {
	q := &query{}
	if n := len(req.GetDescriptors()); n <= len(q.descBuf) {
		q.Descs = q.descBuf[:n]
	} else {
		q.Descs = make([]descriptor, n)
	}
	q.Counters = q.counterBuf[:0]
	reqHits := int64(req.GetHitsAddend())
	if reqHits == 0 {
		reqHits = 1 // proto3 cannot tell 0 from unset; Envoy means 1 (the proto's documented default)
	}
	for i, d := range req.GetDescriptors() {
		tenantID, endpoint, ok := entriesOf(d)
		if !ok {
			l.metrics.ignoredDescriptor.Inc()
			continue
		}
		key, p := l.plans.resolve(l.tenants, tenantID)
		if q.Plan == nil {
			q.Tenant, q.Plan = key, p
		} else if q.Tenant != key {
			q.Refuse = true
		}
		hits := reqHits
		if h := d.GetHitsAddend(); h != nil {
			hits = int64(min(h.GetValue(), maxHits)) // 0: check without counting
		}
		if d.GetIsNegativeHits() {
			hits = 0 // refunds are not supported: checked, not counted
		}
		if len(endpoint) > maxEndpointLen {
			endpoint = longEndpoint
		}
		ws := p.windowsFor(endpoint)
		desc := descriptor{Ours: true, Endpoint: endpoint, Counters: q.indices(len(ws))}
		for j, w := range ws {
			desc.Counters[j] = q.add(counter{Key: keyName(key, endpoint, w), Window: w, Hits: hits})
		}
		q.Descs[i] = desc
	}
	return q
}

// add adds a counter, or the hits to an equal one already there, and returns its index.
func (q *query) add(c counter) int {
	for i := range q.Counters {
		if q.Counters[i].Key == c.Key && q.Counters[i].Window == c.Window {
			q.Counters[i].Hits += c.Hits
			return i
		}
	}
	q.Counters = append(q.Counters, c)
	return len(q.Counters) - 1
}

// entriesOf reads a descriptor of ours: exactly a tenant_id entry and at most one endpoint entry.
func entriesOf(d *ratelimitv3.RateLimitDescriptor) (tenantID, endpoint string, ok bool) {
	var haveTenant, haveEndpoint bool
	for _, e := range d.GetEntries() {
		switch e.GetKey() {
		case entryTenant:
			if haveTenant {
				return "", "", false
			}
			tenantID, haveTenant = e.GetValue(), true
		case entryEndpoint:
			if haveEndpoint {
				return "", "", false
			}
			endpoint, haveEndpoint = e.GetValue(), true
		default:
			return "", "", false
		}
	}
	return tenantID, endpoint, haveTenant && tenantID != ""
}
