package ratelimit

import (
	"cmp"
	"fmt"
	"math/big"
	"slices"
	"sort"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// plan is a configured plan in store terms.
type plan struct {
	Name      string
	Windows   []window
	Endpoints map[string][]window
	// FailOpen: when the store fails, allow (and count it) rather than deny.
	FailOpen bool
}

// windowsFor returns the windows that apply to an endpoint ("" for the tenant as a whole).
func (p *plan) windowsFor(endpoint string) []window {
	if ws, ok := p.Endpoints[endpoint]; ok && endpoint != "" {
		return ws
	}
	return p.Windows
}

// planSet is every configured plan and the one for tenants that are unknown or not active.
type planSet struct {
	byName      map[string]*plan
	restrictive *plan
}

// newPlanSet converts the configured plans. The most restrictive plan is the one whose tightest
// window allows the fewest requests per unit of time (ties: the smaller limit, then the name); it is
// applied, failing closed, to tenants that are unknown or not active.
func newPlanSet(cfg map[string]config.Plan) (*planSet, error) {
	if len(cfg) == 0 {
		return nil, fmt.Errorf("no plans configured")
	}
	ps := &planSet{byName: make(map[string]*plan, len(cfg))}
	names := make([]string, 0, len(cfg))
	for name, c := range cfg {
		p := &plan{Name: name, Windows: windowsOf(c.Windows), FailOpen: c.FailureMode != "closed"}
		if len(p.Windows) == 0 {
			return nil, fmt.Errorf("plan %s has no windows", name)
		}
		if len(c.Endpoints) > 0 {
			p.Endpoints = make(map[string][]window, len(c.Endpoints))
			for ep, ws := range c.Endpoints {
				p.Endpoints[ep] = windowsOf(ws)
			}
		}
		ps.byName[name] = p
		names = append(names, name)
	}
	sort.Strings(names)
	best := ps.byName[names[0]]
	for _, name := range names[1:] {
		if p := ps.byName[name]; lessPermissive(p, best) {
			best = p
		}
	}
	r := *best
	r.FailOpen = false
	ps.restrictive = &r
	return ps, nil
}

// windowsOf converts windows, keeping the smaller limit where two share a length (they would share a
// counter), shortest first.
func windowsOf(cfg []config.Window) []window {
	var out []window
	for _, c := range cfg {
		w := newWindow(c)
		if i := slices.IndexFunc(out, func(o window) bool { return o.PeriodMS == w.PeriodMS }); i >= 0 {
			out[i].Limit = min(out[i].Limit, w.Limit)
			continue
		}
		out = append(out, w)
	}
	slices.SortFunc(out, func(a, b window) int { return cmp.Compare(a.PeriodMS, b.PeriodMS) })
	return out
}

// tightest is the window with the lowest rate (limit per ms).
func tightest(ws []window) window {
	t := ws[0]
	for _, w := range ws[1:] {
		if rate(w).Cmp(rate(t)) < 0 {
			t = w
		}
	}
	return t
}

func rate(w window) *big.Rat { return big.NewRat(w.Limit, w.PeriodMS) }

func lessPermissive(a, b *plan) bool {
	ta, tb := tightest(a.Windows), tightest(b.Windows)
	if c := rate(ta).Cmp(rate(tb)); c != 0 {
		return c < 0
	}
	return ta.Limit < tb.Limit
}

// unknownTenant is the one counter identity shared by every request whose tenant is unknown, so
// that made-up tenant ids cannot grow the store.
const unknownTenant = "_unknown"

// resolve returns the counter identity and plan for a tenant id from a request: the registry's plan
// for an active tenant; the most restrictive plan (failing closed) for any other. A deleted tenant
// counts as unknown, so that no counter of its own is made after its counters were purged.
func (ps *planSet) resolve(tenants TenantLookup, id string) (string, *plan) {
	t, ok := tenants.ByID(id)
	if !ok || t.Status == tenant.Deleted {
		return unknownTenant, ps.restrictive
	}
	if t.Status != tenant.Active {
		return t.ID, ps.restrictive
	}
	p, ok := ps.byName[t.Plan]
	if !ok {
		return t.ID, ps.restrictive
	}
	return t.ID, p
}
