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

// Option configures Fetch.
type Option func(*fetch)

// Delta fetches over incremental (delta) ADS, as Envoys with api_type DELTA_GRPC do, instead of
// state of the world.
func Delta() Option { return func(f *fetch) { f.delta = true } }

// Fetch opens one ADS stream on conn as node, receives the full state of clusters, scopes and
// listeners, then the route configurations every scope names and the endpoints of every EDS
// cluster, ACKing each response as Envoy does. It returns when it has all of them or ctx ends.
func Fetch(ctx context.Context, conn grpc.ClientConnInterface, node *corev3.Node, opts ...Option) (*Config, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &fetch{node: node, got: map[string]map[string]proto.Message{}, want: map[string][]string{}}
	for _, o := range opts {
		o(f)
	}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	var err error
	if f.delta {
		f.deltaStream, err = ads.DeltaAggregatedResources(ctx)
	} else {
		f.sotwStream, err = ads.StreamAggregatedResources(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("open ADS stream: %w", err)
	}
	for _, typ := range wildcard {
		if err := f.subscribe(typ, nil, nil, nil); err != nil {
			return nil, err
		}
	}
	for !f.complete() {
		if err := f.receive(); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("xDS config incomplete (have %s): %w", f.have(), ctx.Err())
			}
			return nil, err
		}
	}
	return f.config(), nil
}

type fetch struct {
	delta       bool
	sotwStream  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	deltaStream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node        *corev3.Node
	sent        bool
	got         map[string]map[string]proto.Message // type -> name -> resource, types answered at least once
	want        map[string][]string                 // named subscriptions (RDS, EDS), sorted
}

// subscribe asks for resources of typ: names, all of them (state of the world), or the change add
// and remove (delta). Nothing named is a wildcard subscription.
func (f *fetch) subscribe(typ string, names, add, remove []string) error {
	node := f.node
	if f.sent {
		node = nil
	}
	f.sent = true
	var err error
	if f.delta {
		err = f.deltaStream.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: typ,
			ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: remove})
	} else {
		err = f.sotwStream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: typ, ResourceNames: names})
	}
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", typ, err)
	}
	return nil
}

// receive takes one response, applies it (a state-of-the-world response replaces the type's
// resources, a delta one adds and removes), ACKs it, and subscribes to what its resources name.
func (f *fetch) receive() error {
	typ, upserts, removed, err := f.recv()
	if err != nil {
		return err
	}
	switch {
	case f.got[typ] == nil || (!f.delta && slices.Contains(wildcard, typ)):
		// The first answer, or a state-of-the-world answer of a type Envoy takes as the full set.
		f.got[typ] = upserts
	default:
		// Delta, or state of the world for routes and endpoints, where a response may carry only
		// the resources that changed and the others stay as they were (the xDS protocol's
		// grouping rules): merge.
		for n, m := range upserts {
			f.got[typ][n] = m
		}
		for _, n := range removed {
			delete(f.got[typ], n)
		}
	}
	switch typ {
	case resource.ScopedRouteType:
		var names []string
		for _, m := range f.got[typ] {
			names = append(names, m.(*routev3.ScopedRouteConfiguration).GetRouteConfigurationName())
		}
		return f.follow(resource.RouteType, names)
	case resource.ClusterType:
		var names []string
		for _, m := range f.got[typ] {
			if c := m.(*clusterv3.Cluster); c.GetType() == clusterv3.Cluster_EDS {
				names = append(names, edsName(c))
			}
		}
		return f.follow(resource.EndpointType, names)
	}
	return nil
}

// recv reads and ACKs one response.
func (f *fetch) recv() (typ string, upserts map[string]proto.Message, removed []string, err error) {
	upserts = map[string]proto.Message{}
	if f.delta {
		resp, err := f.deltaStream.Recv()
		if err != nil {
			return "", nil, nil, fmt.Errorf("ADS stream: %w", err)
		}
		typ = resp.GetTypeUrl()
		for _, r := range resp.GetResources() {
			m, err := r.GetResource().UnmarshalNew()
			if err != nil {
				return "", nil, nil, fmt.Errorf("decode %s %s: %w", typ, r.GetName(), err)
			}
			upserts[r.GetName()] = m
		}
		if err := f.deltaStream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return "", nil, nil, fmt.Errorf("ACK %s: %w", typ, err)
		}
		return typ, upserts, resp.GetRemovedResources(), nil
	}
	resp, err := f.sotwStream.Recv()
	if err != nil {
		return "", nil, nil, fmt.Errorf("ADS stream: %w", err)
	}
	typ = resp.GetTypeUrl()
	for _, a := range resp.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return "", nil, nil, fmt.Errorf("decode %s: %w", typ, err)
		}
		upserts[cachev3.GetResourceName(m)] = m
	}
	if err := f.sotwStream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(),
		ResponseNonce: resp.GetNonce(), ResourceNames: f.want[typ]}); err != nil {
		return "", nil, nil, fmt.Errorf("ACK %s: %w", typ, err)
	}
	return typ, upserts, nil, nil
}

// follow subscribes to the named resources of typ when they differ from the current subscription.
func (f *fetch) follow(typ string, names []string) error {
	slices.Sort(names)
	names = slices.Compact(names)
	prev, subscribed := f.want[typ]
	if subscribed && slices.Equal(names, prev) {
		return nil
	}
	f.want[typ] = names
	add, remove := diff(names, prev), diff(prev, names)
	if f.delta {
		for _, n := range remove {
			delete(f.got[typ], n)
		}
		if len(names) == 0 && f.got[typ] == nil {
			f.got[typ] = map[string]proto.Message{}
		}
		if len(add) == 0 && len(remove) == 0 {
			return nil
		}
		return f.subscribe(typ, nil, add, remove)
	}
	if len(names) == 0 {
		// Nothing to ask for: an empty state-of-the-world subscription would read as a wildcard one.
		f.got[typ] = map[string]proto.Message{}
		return nil
	}
	// Keep what is still wanted: the answer to the new subscription may carry only what was added.
	for _, n := range remove {
		delete(f.got[typ], n)
	}
	return f.subscribe(typ, names, nil, nil)
}

// diff returns the names in a that are not in the sorted b.
func diff(a, b []string) []string {
	var out []string
	for _, n := range a {
		if _, found := slices.BinarySearch(b, n); !found {
			out = append(out, n)
		}
	}
	return out
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
	for _, n := range f.want[resource.RouteType] {
		c.Routes[n] = f.got[resource.RouteType][n].(*routev3.RouteConfiguration)
	}
	for _, n := range f.want[resource.EndpointType] {
		c.Endpoints[n] = f.got[resource.EndpointType][n].(*endpointv3.ClusterLoadAssignment)
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
