package envoybuild

import (
	"errors"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// TenantResources are the resources one tenant adds to Envoy.
type TenantResources struct {
	Scope *routev3.ScopedRouteConfiguration
	Route *routev3.RouteConfiguration
	// Cluster is the tenant's own upstream; nil when it uses the pool.
	Cluster *clusterv3.Cluster
	// Endpoints of the tenant's own cluster; nil unless that cluster uses EDS.
	Endpoints *endpointv3.ClusterLoadAssignment
	// RouteCluster is the cluster the tenant's routes send to.
	RouteCluster string
}

// Tenant builds the resources of one tenant. Only active tenants get any: for every other status
// (pending, suspended, deleted, ...) ok is false and the tenant must have no routes.
func (p Params) Tenant(t *tenant.Tenant) (res TenantResources, ok bool) {
	if t.Status != tenant.Active {
		return TenantResources{}, false
	}
	res.RouteCluster = PoolCluster
	if len(t.Upstream.Endpoints) > 0 {
		res.RouteCluster = TenantResourceName(t.Slug)
		res.Cluster, res.Endpoints = upstreamCluster(res.RouteCluster, upstream(t.Upstream.Endpoints), p.XDS.ConnectTimeout.D())
	}
	res.Scope = p.scope(t)
	res.Route = p.routeConfig(t, res.RouteCluster)
	return res, true
}

// Static are the resources that do not depend on any tenant.
type Static struct {
	Listener  *listenerv3.Listener
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}

// Static builds the listener, the infrastructure clusters (ext_authz, rate limit) and the pool.
func (p Params) Static() Static {
	timeout := p.XDS.ConnectTimeout.D()
	pool, poolEndpoints := upstreamCluster(PoolCluster, poolUpstream(p.XDS), timeout)
	s := Static{
		Listener: p.Listener(),
		Clusters: []*clusterv3.Cluster{
			grpcCluster(AuthzCluster, p.XDS.Authz.Address, timeout),
			grpcCluster(RateLimitCluster, p.XDS.RateLimit.Address, timeout),
			pool,
		},
	}
	if poolEndpoints != nil {
		s.Endpoints = append(s.Endpoints, poolEndpoints)
	}
	return s
}

// Resources is a complete configuration: resources by type URL, then by name.
type Resources map[string]map[string]proto.Message

// TypeOrder lists the served types in make-before-break order: what a type references comes first.
var TypeOrder = []string{
	resource.EndpointType, resource.ClusterType, resource.RouteType, resource.ScopedRouteType, resource.ListenerType,
}

// NewResources returns an empty configuration with every served type present.
func NewResources() Resources {
	r := make(Resources, len(TypeOrder))
	for _, typ := range TypeOrder {
		r[typ] = map[string]proto.Message{}
	}
	return r
}

// AddStatic adds the static resources.
func (r Resources) AddStatic(s Static) {
	r[resource.ListenerType][s.Listener.GetName()] = s.Listener
	for _, c := range s.Clusters {
		r[resource.ClusterType][c.GetName()] = c
	}
	for _, e := range s.Endpoints {
		r[resource.EndpointType][e.GetClusterName()] = e
	}
}

// AddTenant adds one tenant's resources.
func (r Resources) AddTenant(t TenantResources) {
	r[resource.ScopedRouteType][t.Scope.GetName()] = t.Scope
	r[resource.RouteType][t.Route.GetName()] = t.Route
	if t.Cluster != nil {
		r[resource.ClusterType][t.Cluster.GetName()] = t.Cluster
	}
	if t.Endpoints != nil {
		r[resource.EndpointType][t.Endpoints.GetClusterName()] = t.Endpoints
	}
}

// All builds the complete configuration for the tenants.
func (p Params) All(tenants []*tenant.Tenant) Resources {
	r := NewResources()
	r.AddStatic(p.Static())
	for _, t := range tenants {
		if tr, ok := p.Tenant(t); ok {
			r.AddTenant(tr)
		}
	}
	return r
}

// Names returns the resource names of one type, sorted.
func (r Resources) Names(typ string) []string {
	names := make([]string, 0, len(r[typ]))
	for n := range r[typ] {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ErrDangling is wrapped by CheckReferences errors.
var ErrDangling = errors.New("dangling reference")

// CheckReferences verifies that everything a resource names exists: every route's cluster, every
// scope's route configuration, every EDS cluster's endpoints and every cluster's endpoints owner.
// go-control-plane's Consistent() does not check routes against clusters; this does.
func CheckReferences(r Resources) error {
	var errs []error
	clusters := r[resource.ClusterType]
	for _, name := range r.Names(resource.RouteType) {
		for _, c := range RouteClusters(r[resource.RouteType][name].(*routev3.RouteConfiguration)) {
			if _, ok := clusters[c]; !ok {
				errs = append(errs, fmt.Errorf("%w: route configuration %s sends to missing cluster %s", ErrDangling, name, c))
			}
		}
	}
	for _, name := range r.Names(resource.ScopedRouteType) {
		rc := r[resource.ScopedRouteType][name].(*routev3.ScopedRouteConfiguration).GetRouteConfigurationName()
		if _, ok := r[resource.RouteType][rc]; !ok {
			errs = append(errs, fmt.Errorf("%w: scope %s names missing route configuration %s", ErrDangling, name, rc))
		}
	}
	for _, name := range r.Names(resource.ClusterType) {
		c := clusters[name].(*clusterv3.Cluster)
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if _, ok := r[resource.EndpointType][edsName(c)]; !ok {
			errs = append(errs, fmt.Errorf("%w: EDS cluster %s has no endpoints resource", ErrDangling, name))
		}
	}
	return errors.Join(errs...)
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// RouteClusters lists the clusters a route configuration sends to, without duplicates.
func RouteClusters(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, rt := range vh.GetRoutes() {
			var names []string
			if c := rt.GetRoute().GetCluster(); c != "" {
				names = append(names, c)
			}
			for _, wc := range rt.GetRoute().GetWeightedClusters().GetClusters() {
				names = append(names, wc.GetName())
			}
			for _, n := range names {
				if !slices.Contains(out, n) {
					out = append(out, n)
				}
			}
		}
	}
	return out
}
