package xdsfetch

import (
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
)

// extAuthzFilter is the name per-route ext_authz settings are keyed on.
const extAuthzFilter = "envoy.filters.http.ext_authz"

// Match is where Envoy sends one request, as the scoped routes say.
type Match struct {
	Scope       *routev3.ScopedRouteConfiguration
	RouteConfig *routev3.RouteConfiguration
	VirtualHost *routev3.VirtualHost
	Route       *routev3.Route
	// ClusterName is the route's cluster; Cluster and Endpoints are nil when the server sent none.
	ClusterName string
	Cluster     *clusterv3.Cluster
	Endpoints   *endpointv3.ClusterLoadAssignment
	// ContextExtensions are what the route tells ext_authz.
	ContextExtensions map[string]string
}

// Match routes a request to host (":authority", a port allowed) and path the way Envoy's scoped
// routes do with tenantgate's scope key (the host up to its first ':'): the scope whose key is the
// host, its route configuration's virtual host for the host, then the first route whose prefix,
// path or regex-free match takes the path.
func (c *Config) Match(host, path string) (*Match, error) {
	key, _, _ := strings.Cut(host, ":")
	var names []string
	for n := range c.Scopes {
		names = append(names, n)
	}
	slices.Sort(names)
	m := &Match{}
	for _, n := range names {
		s := c.Scopes[n]
		if fr := s.GetKey().GetFragments(); len(fr) == 1 && fr[0].GetStringKey() == key {
			m.Scope = s
			break
		}
	}
	if m.Scope == nil {
		return nil, fmt.Errorf("%w: no scope has the key %q (%d scopes served)", ErrNoRoute, key, len(c.Scopes))
	}
	m.RouteConfig = c.Routes[m.Scope.GetRouteConfigurationName()]
	if m.RouteConfig == nil {
		return nil, fmt.Errorf("%w: scope %s names route configuration %s, which was not served", ErrNoRoute, m.Scope.GetName(), m.Scope.GetRouteConfigurationName())
	}
	m.VirtualHost = virtualHost(m.RouteConfig, host)
	if m.VirtualHost == nil {
		return nil, fmt.Errorf("%w: route configuration %s has no virtual host for %q", ErrNoRoute, m.RouteConfig.GetName(), host)
	}
	for _, r := range m.VirtualHost.GetRoutes() {
		if matches(r.GetMatch(), path) {
			m.Route = r
			break
		}
	}
	if m.Route == nil {
		return nil, fmt.Errorf("%w: no route of virtual host %s takes path %q", ErrNoRoute, m.VirtualHost.GetName(), path)
	}
	m.ClusterName = m.Route.GetRoute().GetCluster()
	m.Cluster = c.Clusters[m.ClusterName]
	if m.Cluster != nil {
		m.Endpoints = c.Endpoints[edsName(m.Cluster)]
	}
	m.ContextExtensions = contextExtensions(m.VirtualHost, m.Route)
	return m, nil
}

// virtualHost picks the virtual host whose domains take host: exact first, then a "host:*" or
// wildcard form, as Envoy does for the forms tenantgate uses.
func virtualHost(rc *routev3.RouteConfiguration, host string) *routev3.VirtualHost {
	name, _, _ := strings.Cut(host, ":")
	var fallback *routev3.VirtualHost
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			switch {
			case strings.EqualFold(d, host):
				return vh
			case strings.EqualFold(d, name+":*") && strings.Contains(host, ":"):
				return vh
			case d == "*":
				fallback = vh
			case strings.HasPrefix(d, "*") && strings.HasSuffix(strings.ToLower(name), strings.ToLower(d[1:])):
				if fallback == nil {
					fallback = vh
				}
			}
		}
	}
	return fallback
}

func matches(m *routev3.RouteMatch, path string) bool {
	p, _, _ := strings.Cut(path, "?")
	switch {
	case m.GetPrefix() != "" || m.GetPathSpecifier() == nil:
		return strings.HasPrefix(p, m.GetPrefix())
	case m.GetPath() != "":
		return p == m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		pre := m.GetPathSeparatedPrefix()
		return p == pre || strings.HasPrefix(p, pre+"/")
	}
	return false
}

// contextExtensions merges the virtual host's and the route's ext_authz context extensions (the
// route's win), as Envoy does.
func contextExtensions(vh *routev3.VirtualHost, r *routev3.Route) map[string]string {
	out := map[string]string{}
	for _, cfg := range []*routev3.Route{{TypedPerFilterConfig: vh.GetTypedPerFilterConfig()}, r} {
		a := cfg.GetTypedPerFilterConfig()[extAuthzFilter]
		if a == nil {
			continue
		}
		var per extauthzv3.ExtAuthzPerRoute
		if a.UnmarshalTo(&per) != nil {
			continue
		}
		for k, v := range per.GetCheckSettings().GetContextExtensions() {
			out[k] = v
		}
	}
	return out
}
