package envoybuild

import "github.com/tenantgate/tenantgate/extauthz"

// Names of the resources and filters tenantgate configures in Envoy.
const (
	// ListenerName is the listener that takes tenant traffic.
	ListenerName = "tenantgate_http"
	// ScopedRoutesName names the set of tenant scopes in the listener's connection manager.
	ScopedRoutesName = "tenants"
	// PoolCluster is the shared upstream of pool and namespace tenants.
	PoolCluster = "tenantgate_pool"
	// AuthzCluster and RateLimitCluster reach the tenantgate sidecar's gRPC services.
	AuthzCluster     = "tenantgate_authz"
	RateLimitCluster = "tenantgate_ratelimit"
	// RateLimitDomain is the rate-limit domain every descriptor is sent under.
	RateLimitDomain = "tenantgate"

	// ContextTenantID is the context extension ext_authz receives on every tenant route: the tenant
	// the host belongs to. The authz service denies a token of any other tenant. It is extauthz's own
	// key, so the two cannot drift apart.
	ContextTenantID = extauthz.ExtTenant
	// ContextPlans lists, on a route open to some plans only (xds.routes[].plans), those plans.
	ContextPlans = extauthz.ExtPlans

	// MetadataNamespace holds each tenant route's filter metadata: the tenant id, slug and plan, for
	// access logs (%METADATA(ROUTE:tenantgate:tenant_plan)%) and `tenantgate explain`. It is not a
	// plan requirement; ext_authz is told a plan only where a route is limited to some plans.
	MetadataNamespace = "tenantgate"

	// Rate-limit descriptor keys.
	DescriptorTenantID = "tenant_id"
	DescriptorEndpoint = "endpoint"
	// TenantIDHeader is stamped by ext_authz on every allowed request.
	TenantIDHeader = "x-tenant-id"

	filterExtAuthz   = "envoy.filters.http.ext_authz"
	filterRateLimit  = "envoy.filters.http.ratelimit"
	filterRouter     = "envoy.filters.http.router"
	filterHCM        = "envoy.filters.network.http_connection_manager"
	httpProtocolOpts = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// TenantResourceName is the name of a tenant's scope, route configuration and own cluster.
func TenantResourceName(slug string) string { return "tenant-" + slug }

// Host is the host a tenant is reached at.
func Host(slug, baseDomain string) string { return slug + "." + baseDomain }
