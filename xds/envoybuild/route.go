package envoybuild

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// scope keys the tenant's route configuration on its host.
func (p Params) scope(t *tenant.Tenant) *routev3.ScopedRouteConfiguration {
	name := TenantResourceName(t.Slug)
	return &routev3.ScopedRouteConfiguration{
		Name:                   name,
		RouteConfigurationName: name,
		Key: &routev3.ScopedRouteConfiguration_Key{Fragments: []*routev3.ScopedRouteConfiguration_Key_Fragment{{
			Type: &routev3.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: Host(t.Slug, p.BaseDomain)},
		}}},
	}
}

// routeConfig is the tenant's routing layout: every configured route sends to cluster, tells ext_authz
// which tenant the host belongs to (and, on routes open to some plans only, which plans), and
// rate-limits per tenant and route.
func (p Params) routeConfig(t *tenant.Tenant, cluster string) *routev3.RouteConfiguration {
	name := TenantResourceName(t.Slug)
	host := Host(t.Slug, p.BaseDomain)
	authz := authzSettings(t.ID, nil)
	meta := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{MetadataNamespace: {Fields: map[string]*structpb.Value{
		"tenant_id":   structpb.NewStringValue(t.ID),
		"tenant_slug": structpb.NewStringValue(t.Slug),
		"tenant_plan": structpb.NewStringValue(t.Plan),
	}}}}
	routes := make([]*routev3.Route, 0, len(p.XDS.Routes))
	for _, r := range p.XDS.Routes {
		action := &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			RateLimits: []*routev3.RateLimit{{Actions: []*routev3.RateLimit_Action{
				{ActionSpecifier: &routev3.RateLimit_Action_RequestHeaders_{RequestHeaders: &routev3.RateLimit_Action_RequestHeaders{
					HeaderName:    TenantIDHeader,
					DescriptorKey: DescriptorTenantID,
				}}},
				{ActionSpecifier: &routev3.RateLimit_Action_GenericKey_{GenericKey: &routev3.RateLimit_Action_GenericKey{
					DescriptorKey:   DescriptorEndpoint,
					DescriptorValue: r.Name,
				}}},
			}}},
		}
		if r.Timeout > 0 {
			action.Timeout = durationpb.New(r.Timeout.D())
		}
		routes = append(routes, &routev3.Route{
			Name:                 r.Name,
			Match:                &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: r.Prefix}},
			Action:               &routev3.Route_Route{Route: action},
			Metadata:             meta,
			TypedPerFilterConfig: map[string]*anypb.Any{filterExtAuthz: routeAuthz(authz, t.ID, r.Plans)},
		})
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{host, host + ":*"},
			Routes:  routes,
		}},
	}
}

// authzSettings are the ext_authz context extensions of a route: the tenant it serves and, when the
// route is open to some plans only, those plans (comma-separated).
func authzSettings(tenantID string, plans []string) *anypb.Any {
	ext := map[string]string{ContextTenantID: tenantID}
	if len(plans) > 0 {
		ext[ContextPlans] = strings.Join(plans, ",")
	}
	return mustAny(&extauthzv3.ExtAuthzPerRoute{Override: &extauthzv3.ExtAuthzPerRoute_CheckSettings{
		CheckSettings: &extauthzv3.CheckSettings{ContextExtensions: ext},
	}})
}

// routeAuthz shares the tenant's common settings across its routes, and builds its own for a route
// limited to some plans.
func routeAuthz(common *anypb.Any, tenantID string, plans []string) *anypb.Any {
	if len(plans) == 0 {
		return common
	}
	return authzSettings(tenantID, plans)
}
