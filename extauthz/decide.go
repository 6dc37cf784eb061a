package extauthz

import (
	"strings"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Tenants is what Check needs from the tenant snapshot store (snapshot.Store satisfies it).
type Tenants interface {
	Load() *snapshot.Snapshot
	IsReady() bool
}

// Context extension keys a route may set on its ext_authz per-route config. The xDS builders
// (xds/envoybuild) send exactly these keys, so what a route says and what Check reads cannot drift.
const (
	// ExtTenant names the one tenant (id or slug) the route serves.
	ExtTenant = "tenant_id"
	// ExtPlans lists the plans (comma-separated) the route is open to; absent, every plan may use it.
	ExtPlans = "plans"
)

// decide picks the tenant a verified token acts for, from the current snapshot, and checks that it
// may use this route. Every binding is checked before the status, so a denial says nothing about a
// tenant the caller may not name; every failure except suspension is the same tenant_denied.
func decide(tenants Tenants, registryUp func() bool, c *Claims, host, baseDomain string, ext map[string]string) (*tenant.Tenant, Reason) {
	if !tenants.IsReady() {
		return nil, ReasonTenantsUnavailable
	}
	if c.Tenant == "" {
		return nil, ReasonBadTenantClaim
	}
	snap := tenants.Load()
	var t *tenant.Tenant
	var ok bool
	if c.TenantIsSlug {
		t, ok = snap.BySlug(c.Tenant)
	} else {
		t, ok = snap.ByID(c.Tenant)
	}
	if !ok && registryUp != nil && !registryUp() {
		return nil, ReasonTenantsUnavailable
	}
	if !ok || !c.MayName(t) || !hostAllows(host, baseDomain, t.Slug) {
		return nil, ReasonTenantDenied
	}
	if want := ext[ExtTenant]; want != "" && want != t.ID && want != t.Slug {
		return nil, ReasonTenantDenied
	}
	switch t.Status {
	case tenant.Active:
	case tenant.Suspended:
		return nil, ReasonTenantSuspended
	default:
		return nil, ReasonTenantDenied
	}
	if plans := ext[ExtPlans]; plans != "" && !listHas(plans, t.Plan) {
		return nil, ReasonPlanNotAllowed
	}
	return t, ReasonOK
}

// hostAllows applies host binding: a request to <label>.<baseDomain> is only for the tenant whose
// slug is label. Other hosts carry no binding.
func hostAllows(host, baseDomain, slug string) bool {
	host = hostname(host)
	if len(host) <= len(baseDomain)+1 || !strings.HasSuffix(host, baseDomain) || host[len(host)-len(baseDomain)-1] != '.' {
		return true
	}
	return host[:len(host)-len(baseDomain)-1] == slug
}

// hostname lower-cases host and strips its port and a trailing dot.
func hostname(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	return lowerASCII(host)
}

func listHas(list, v string) bool {
	for item := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(item) == v {
			return true
		}
	}
	return false
}
