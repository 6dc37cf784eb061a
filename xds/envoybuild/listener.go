package envoybuild

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	ratelimitconfv3 "github.com/envoyproxy/go-control-plane/envoy/config/ratelimit/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Listener is the tenant traffic listener: one HTTP connection manager whose routes are the tenants'
// scopes (keyed on the host without its port), with the filter chain ext_authz, ratelimit, router.
func (p Params) Listener() *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:    ListenerName,
		Address: socketAddress(p.XDS.Listener.Address, p.XDS.Listener.Port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       filterHCM,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(p.connectionManager())},
			}},
		}},
	}
}

func (p Params) connectionManager() *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: "tenants",
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{
			Name: ScopedRoutesName,
			ScopeKeyBuilder: &hcmv3.ScopedRoutes_ScopeKeyBuilder{
				Fragments: []*hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder{{
					Type: &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_{
						HeaderValueExtractor: &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor{
							// The host without a port: "acme.example.com:443" keys as "acme.example.com".
							Name:             ":authority",
							ElementSeparator: ":",
							ExtractType:      &hcmv3.ScopedRoutes_ScopeKeyBuilder_FragmentBuilder_HeaderValueExtractor_Index{Index: 0},
						},
					},
				}},
			},
			RdsConfigSource: adsSource(),
			ConfigSpecifier: &hcmv3.ScopedRoutes_ScopedRds{ScopedRds: &hcmv3.ScopedRds{ScopedRdsConfigSource: adsSource()}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{
			{Name: filterExtAuthz, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(p.extAuthz())}},
			{Name: filterRateLimit, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(p.rateLimit())}},
			{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{
				SuppressEnvoyHeaders: true,
			})}},
		},
		UseRemoteAddress:             wrapperspb.Bool(true),
		NormalizePath:                wrapperspb.Bool(true),
		MergeSlashes:                 true,
		PathWithEscapedSlashesAction: hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT,
		RequestHeadersTimeout:        durationpb.New(10 * time.Second),
		StreamIdleTimeout:            durationpb.New(5 * time.Minute),
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout:                  durationpb.New(time.Hour),
			HeadersWithUnderscoresAction: corev3.HttpProtocolOptions_REJECT_REQUEST,
		},
	}
}

// extAuthz fails closed: when the authz service errs or times out the request gets a 503, never
// a pass. Only the configured headers (the credentials), the trace context, and the trusted-header
// names are sent to it: the service must see a client's x-tenant-* headers to remove them, since
// Envoy only applies headers_to_remove to headers it sent.
func (p Params) extAuthz() *extauthzv3.ExtAuthz {
	patterns := make([]*matcherv3.StringMatcher, 0, len(p.XDS.AuthzHeaders)+len(alwaysToAuthz)+1)
	for _, h := range p.XDS.AuthzHeaders {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h}})
	}
	for _, h := range alwaysToAuthz {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h}})
	}
	patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: trustedHeaderPrefix}})
	return &extauthzv3.ExtAuthz{
		Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{
			TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: AuthzCluster}},
			Timeout:         durationpb.New(p.XDS.Authz.Timeout.D()),
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		FailureModeAllow:    false,
		StatusOnError:       &typev3.HttpStatus{Code: typev3.StatusCode_ServiceUnavailable},
		ValidateMutations:   true,
		AllowedHeaders:      &matcherv3.ListStringMatcher{Patterns: patterns},
	}
}

// rateLimit asks the rate-limit service in the tenantgate domain with the descriptors each route
// names. If the service cannot be reached the request passes: the service applies each plan's own
// failure mode when its store fails, and an unreachable sidecar is already caught by ext_authz,
// which runs first and fails closed. Every request is counted, "internal" ones too: behind a load
// balancer with a private address (a Kubernetes Service, a cloud LB) Envoy marks every request
// internal, and "external" would then limit nothing.
func (p Params) rateLimit() *ratelimitv3.RateLimit {
	return &ratelimitv3.RateLimit{
		Domain:      RateLimitDomain,
		RequestType: "both",
		Timeout:     durationpb.New(p.XDS.RateLimit.Timeout.D()),
		RateLimitService: &ratelimitconfv3.RateLimitServiceConfig{
			GrpcService: &corev3.GrpcService{
				TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: RateLimitCluster}},
			},
			TransportApiVersion: corev3.ApiVersion_V3,
		},
		EnableXRatelimitHeaders: ratelimitv3.RateLimit_DRAFT_VERSION_03,
	}
}

// trustedHeaderPrefix names the headers tenantgate stamps (x-tenant-id, ...); every client-sent
// header under it goes to ext_authz so the service can remove what it does not stamp.
const trustedHeaderPrefix = "x-tenant-"

// alwaysToAuthz are sent to ext_authz whatever the config says: the other stamped header, the
// request id its log lines carry, and the W3C trace context the service continues.
var alwaysToAuthz = []string{"x-auth-subject", "x-request-id", "traceparent", "tracestate"}
