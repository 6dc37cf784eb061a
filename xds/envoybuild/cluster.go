package envoybuild

import (
	"net"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// upstream is one cluster's worth of addresses.
type upstream []tenant.Endpoint

// allIPs reports whether every endpoint is an IP address, as EDS requires.
func (u upstream) allIPs() bool {
	for _, ep := range u {
		if net.ParseIP(ep.Host) == nil {
			return false
		}
	}
	return true
}

// upstreamCluster builds a cluster for the endpoints: EDS when every endpoint is an IP address (the
// endpoints then come as their own resource, so they can change without touching the cluster),
// STRICT_DNS with the endpoints inline otherwise (EDS cannot carry host names).
func upstreamCluster(name string, eps upstream, connectTimeout time.Duration) (*clusterv3.Cluster, *endpointv3.ClusterLoadAssignment) {
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeout),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
	cla := loadAssignment(name, eps)
	if eps.allIPs() {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource(), ServiceName: name}
		return c, cla
	}
	c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
	c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	c.LoadAssignment = cla
	return c, nil
}

func loadAssignment(name string, eps upstream) *endpointv3.ClusterLoadAssignment {
	lb := make([]*endpointv3.LbEndpoint, 0, len(eps))
	for _, ep := range eps {
		lb = append(lb, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ep.Host, ep.Port)}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lb}},
	}
}

// grpcCluster is an infrastructure cluster speaking HTTP/2 to a tenantgate gRPC service.
func grpcCluster(name, address string, connectTimeout time.Duration) *clusterv3.Cluster {
	host, port, _ := config.SplitEndpoint(address) // validated with the configuration
	c, _ := upstreamCluster(name, upstream{{Host: host, Port: port}}, connectTimeout)
	// A static address needs no discovery: the cluster must work before any EDS arrives.
	c.EdsClusterConfig = nil
	c.LoadAssignment = loadAssignment(name, upstream{{Host: host, Port: port}})
	if net.ParseIP(host) != nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOpts: mustAny(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}},
	})}
	return c
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// adsSource is the config source of every dynamic resource: the ADS stream the bootstrap set up.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// poolUpstream parses the configured pool endpoints.
func poolUpstream(x config.XDS) upstream {
	out := make(upstream, 0, len(x.Pool.Endpoints))
	for _, ep := range x.Pool.Endpoints {
		host, port, _ := config.SplitEndpoint(ep) // validated with the configuration
		out = append(out, tenant.Endpoint{Host: host, Port: port})
	}
	return out
}
