package xdsfetch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Config is what the server sent, by resource name.
type Config struct {
	Listeners map[string]*listenerv3.Listener
	Clusters  map[string]*clusterv3.Cluster
	Scopes    map[string]*routev3.ScopedRouteConfiguration
	Routes    map[string]*routev3.RouteConfiguration
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
}

// wildcard are the types Envoy subscribes to without names; the server sends their full state.
var wildcard = []string{resource.ClusterType, resource.ScopedRouteType, resource.ListenerType}

// Fetch opens one ADS stream on conn as node, receives the full state of clusters, scopes and
// listeners, then the route configurations every scope names and the endpoints of every EDS
// cluster, ACKing each response as Envoy does. It returns when it has all of them or ctx ends.
func Fetch(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node) (*Config, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, fmt.Errorf("open ADS stream: %w", err)
	}
	f := &fetch{stream: stream, node: node, got: map[string]map[string]proto.Message{}, want: map[string][]string{}}
	for _, typ := range wildcard {
		if err := f.subscribe(typ, nil); err != nil {
			return nil, err
		}
	}
	for !f.complete() {
		resp, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("xDS config incomplete (have %s): %w", f.have(), ctx.Err())
			}
			return nil, fmt.Errorf("ADS stream: %w", err)
		}
		if err := f.receive(resp); err != nil {
			return nil, err
		}
	}
	return f.config(), nil
}

type fetch struct {
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	sent   bool
	got    map[string]map[string]proto.Message // type -> name -> resource, types answered at least once
	want   map[string][]string                 // named subscriptions (RDS, EDS)
}

func (f *fetch) subscribe(typ string, names []string) error {
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResourceNames: names}
	if !f.sent {
		req.Node, f.sent = f.node, true
	}
	if err := f.stream.Send(req); err != nil {
		return fmt.Errorf("subscribe %s: %w", typ, err)
	}
	return nil
}

// receive records a response, ACKs it, and subscribes to what its resources name.
func (f *fetch) receive(resp *discoveryv3.DiscoveryResponse) error {
	typ := resp.GetTypeUrl()
	res := make(map[string]proto.Message, len(resp.GetResources()))
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("decode %s: %w", typ, err)
		}
		res[cachev3.GetResourceName(m)] = m
	}
	f.got[typ] = res
	if err := f.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(),
		ResponseNonce: resp.GetNonce(), ResourceNames: f.want[typ]}); err != nil {
		return fmt.Errorf("ACK %s: %w", typ, err)
	}
	switch typ {
	case resource.ScopedRouteType:
		var names []string
		for _, m := range res {
			names = append(names, m.(*routev3.ScopedRouteConfiguration).GetRouteConfigurationName())
		}
		return f.follow(resource.RouteType, names)
	case resource.ClusterType:
		var names []string
		for _, m := range res {
			if c := m.(*clusterv3.Cluster); c.GetType() == clusterv3.Cluster_EDS {
				names = append(names, edsName(c))
			}
		}
		return f.follow(resource.EndpointType, names)
	}
	return nil
}

// follow subscribes to the named resources of typ when they differ from the current subscription.
func (f *fetch) follow(typ string, names []string) error {
	slices.Sort(names)
	names = slices.Compact(names)
	if slices.Equal(names, f.want[typ]) && (len(names) > 0 || f.got[typ] != nil) {
		return nil
	}
	f.want[typ] = names
	if len(names) == 0 {
		// Nothing to ask for: an empty named subscription would read as a wildcard one.
		f.got[typ] = map[string]proto.Message{}
		return nil
	}
	delete(f.got, typ)
	return f.subscribe(typ, names)
}

// complete: every wildcard type answered, and every named resource asked for has arrived.
func (f *fetch) complete() bool {
	for _, typ := range wildcard {
		if f.got[typ] == nil {
			return false
		}
	}
	for _, typ := range []string{resource.RouteType, resource.EndpointType} {
		got, ok := f.got[typ]
		if !ok {
			return false
		}
		for _, n := range f.want[typ] {
			if _, ok := got[n]; !ok {
				return false
			}
		}
	}
	return true
}

func (f *fetch) have() string {
	var out []string
	for typ, res := range f.got {
		out = append(out, fmt.Sprintf("%d %s", len(res), strings.TrimPrefix(typ, resource.APITypePrefix)))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

func (f *fetch) config() *Config {
	c := &Config{
		Listeners: map[string]*listenerv3.Listener{},
		Clusters:  map[string]*clusterv3.Cluster{},
		Scopes:    map[string]*routev3.ScopedRouteConfiguration{},
		Routes:    map[string]*routev3.RouteConfiguration{},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
	}
	for n, m := range f.got[resource.ListenerType] {
		c.Listeners[n] = m.(*listenerv3.Listener)
	}
	for n, m := range f.got[resource.ClusterType] {
		c.Clusters[n] = m.(*clusterv3.Cluster)
	}
	for n, m := range f.got[resource.ScopedRouteType] {
		c.Scopes[n] = m.(*routev3.ScopedRouteConfiguration)
	}
	for n, m := range f.got[resource.RouteType] {
		c.Routes[n] = m.(*routev3.RouteConfiguration)
	}
	for n, m := range f.got[resource.EndpointType] {
		c.Endpoints[n] = m.(*endpointv3.ClusterLoadAssignment)
	}
	return c
}

func edsName(c *clusterv3.Cluster) string {
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// ErrNoRoute is returned by Match when no scope or route takes the request.
var ErrNoRoute = errors.New("no route")
