package envoybuild

import (
	"fmt"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	overloadv3 "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	downstreamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tenantgate/tenantgate/internal/config"
)

// Role is what an Envoy is for.
type Role string

// The roles `tenantgate bootstrap` writes a bootstrap for.
const (
	// Gateway: the edge Envoy in front of every tenant.
	Gateway Role = "gateway"
	// Sidecar: an Envoy next to one application instance.
	Sidecar Role = "sidecar"
)

// XDSCluster is the bootstrap's one static cluster: the ADS server.
const XDSCluster = "tenantgate_xds"

// BootstrapParams describe one Envoy.
type BootstrapParams struct {
	Role       Role
	NodeID     string
	Cluster    string
	XDSAddress string // host:port of the tenantgate xDS server
	AdminPort  uint32 // admin listens on 127.0.0.1 only
	Delta      bool   // delta ADS (the default); state-of-the-world otherwise
}

// Validate names the first bad field.
func (b BootstrapParams) Validate() error {
	switch {
	case b.Role != Gateway && b.Role != Sidecar:
		return fmt.Errorf("role must be gateway or sidecar (got %q)", b.Role)
	case b.NodeID == "":
		return fmt.Errorf("node id is required")
	case b.Cluster == "":
		return fmt.Errorf("cluster is required")
	case b.AdminPort == 0 || b.AdminPort > 65535:
		return fmt.Errorf("admin port must be from 1 to 65535")
	}
	if _, _, err := config.SplitEndpoint(b.XDSAddress); err != nil {
		return fmt.Errorf("xds address: %w", err)
	}
	return nil
}

// maxConnections bounds downstream connections per role: a gateway takes every tenant's traffic, a
// sidecar one application instance's.
var maxConnections = map[Role]int64{Gateway: 50_000, Sidecar: 5_000}

// Bootstrap builds an Envoy bootstrap: listeners and clusters over ADS from tenantgate, the node's
// identity, the admin interface on localhost, and a cap on downstream connections.
func Bootstrap(b BootstrapParams) (*bootstrapv3.Bootstrap, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	xds := grpcCluster(XDSCluster, b.XDSAddress, time.Second)
	// Keepalives on the ADS connection notice a dead control plane long before TCP does.
	xds.TypedExtensionProtocolOptions[httpProtocolOpts] = mustAny(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
					ConnectionKeepalive: &corev3.KeepaliveSettings{
						Interval: durationpb.New(30 * time.Second),
						Timeout:  durationpb.New(5 * time.Second),
					},
				},
			},
		}},
	})
	apiType := corev3.ApiConfigSource_DELTA_GRPC
	if !b.Delta {
		apiType = corev3.ApiConfigSource_GRPC
	}
	return &bootstrapv3.Bootstrap{
		Node: &corev3.Node{
			Id:      b.NodeID,
			Cluster: b.Cluster,
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{
				"tenantgate_role": structpb.NewStringValue(string(b.Role)),
			}},
		},
		Admin: &bootstrapv3.Admin{Address: socketAddress("127.0.0.1", b.AdminPort)},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSCluster}},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: adsSource(),
			CdsConfig: adsSource(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{Clusters: []*clusterv3.Cluster{xds}},
		OverloadManager: &overloadv3.OverloadManager{
			ResourceMonitors: []*overloadv3.ResourceMonitor{{
				Name: "envoy.resource_monitors.global_downstream_max_connections",
				ConfigType: &overloadv3.ResourceMonitor_TypedConfig{TypedConfig: mustAny(&downstreamv3.DownstreamConnectionsConfig{
					MaxActiveDownstreamConnections: maxConnections[b.Role],
				})},
			}},
		},
	}, nil
}
