package xds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// adsClient is a simulated Envoy on one ADS stream, state-of-the-world or delta. Like Envoy it
// subscribes to listeners, clusters and scopes by wildcard, to the route configurations its scopes
// name and the endpoints its EDS clusters name; it applies the full-state rule to listener, cluster
// and scope responses over state-of-the-world; and it ACKs every response (or NACKs the ones reject
// refuses).
type adsClient struct {
	node   string
	delta  bool
	reject func(typeURL string, res map[string]proto.Message) error

	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	changed   *sync.Cond
	res       map[string]map[string]proto.Message // accepted state, by type then name
	responses map[string]int                      // responses received, by type
	nacks     int
	bytes     int64                // wire size of every response received
	seenAt    map[string]time.Time // "RouteConfiguration/name" and "ScopedRouteConfiguration/name" -> last arrival
	lean      bool                 // keep a skeleton of each route configuration only
	err       error

	// stream bookkeeping (receive goroutine only)
	version   map[string]string            // sotw: last accepted version by type
	nonce     map[string]string            // last nonce by type
	subs      map[string][]string          // sotw: named subscriptions (routes, endpoints)
	versions  map[string]map[string]string // delta: version of every resource held, by type
	received  map[string]int               // resources received, by type
	resumed   bool                         // delta: reconnecting with what a previous client held
	preload   map[string]map[string]proto.Message
	deltaSubs map[string]map[string]string // delta: scope or cluster -> the route or endpoints it names
}

var wildcardTypes = []string{resource.ListenerType, resource.ClusterType, resource.ScopedRouteType}

type clientOpt func(*adsClient)

// resumeFrom starts a delta client holding what old held, announcing it as initial resource
// versions, as a reconnecting Envoy does.
func resumeFrom(old *adsClient) clientOpt {
	return func(c *adsClient) {
		old.mu.Lock()
		defer old.mu.Unlock()
		c.resumed = true
		c.versions = map[string]map[string]string{}
		for typ, m := range old.versions {
			c.versions[typ] = maps.Clone(m)
		}
		c.deltaSubs = map[string]map[string]string{}
		for typ, m := range old.deltaSubs {
			c.deltaSubs[typ] = maps.Clone(m)
		}
		c.preload = map[string]map[string]proto.Message{}
		for typ, m := range old.res {
			c.preload[typ] = maps.Clone(m)
		}
	}
}

func lean() clientOpt { return func(c *adsClient) { c.lean = true } }

// leanRoute keeps a route configuration's name, routes, clusters, authz context and metadata (tenant, plan).
func leanRoute(rc *routev3.RouteConfiguration) *routev3.RouteConfiguration {
	out := &routev3.RouteConfiguration{Name: rc.GetName()}
	for _, vh := range rc.GetVirtualHosts() {
		v := &routev3.VirtualHost{Name: vh.GetName()}
		for _, r := range vh.GetRoutes() {
			v.Routes = append(v.Routes, &routev3.Route{Name: r.GetName(), TypedPerFilterConfig: r.GetTypedPerFilterConfig(), Metadata: r.GetMetadata(),
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.GetRoute().GetCluster()}}}})
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out
}

// planOf is the tenant plan in the route configuration's first route's metadata. c.mu held.
func (c *adsClient) planOf(route string) string {
	rc, ok := c.res[resource.RouteType][route]
	if !ok {
		return ""
	}
	for _, vh := range rc.(*routev3.RouteConfiguration).GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			return r.GetMetadata().GetFilterMetadata()[envoybuild.MetadataNamespace].GetFields()["tenant_plan"].GetStringValue()
		}
	}
	return ""
}

func rejecting(fn func(typeURL string, res map[string]proto.Message) error) clientOpt {
	return func(c *adsClient) { c.reject = fn }
}

func dialADS(t testing.TB, addr, node string, delta bool, opts ...clientOpt) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &adsClient{
		node: node, delta: delta, conn: conn, cancel: cancel, done: make(chan struct{}),
		res: map[string]map[string]proto.Message{}, responses: map[string]int{}, seenAt: map[string]time.Time{},
		versions: map[string]map[string]string{}, received: map[string]int{},
		version: map[string]string{}, nonce: map[string]string{}, subs: map[string][]string{},
	}
	c.changed = sync.NewCond(&c.mu)
	for _, o := range opts {
		o(c)
	}
	for _, typ := range []string{resource.ListenerType, resource.ClusterType, resource.ScopedRouteType, resource.RouteType, resource.EndpointType} {
		c.res[typ] = map[string]proto.Message{}
		if c.preload[typ] != nil {
			c.res[typ] = c.preload[typ]
		}
	}
	c.preload = nil
	go c.run(ctx)
	t.Cleanup(c.close)
	return c
}

func (c *adsClient) close() {
	c.cancel()
	<-c.done
	c.conn.Close()
}

func (c *adsClient) fail(err error) {
	c.mu.Lock()
	if c.err == nil && !errors.Is(err, context.Canceled) {
		c.err = err
	}
	c.changed.Broadcast()
	c.mu.Unlock()
}

func (c *adsClient) run(ctx context.Context) {
	defer close(c.done)
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn)
	node := &corev3.Node{Id: c.node, Cluster: "test"}
	if c.delta {
		c.fail(c.runDelta(ctx, ads, node))
	} else {
		c.fail(c.runSotw(ctx, ads, node))
	}
}

func (c *adsClient) runSotw(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, node *corev3.Node) error {
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for i, typ := range wildcardTypes {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			return err
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return ignoreEnd(err)
		}
		typ := resp.GetTypeUrl()
		got := map[string]proto.Message{}
		for _, a := range resp.GetResources() {
			m, name, err := decode(a)
			if err != nil {
				return err
			}
			got[name] = m
		}
		c.nonce[typ] = resp.GetNonce()
		ack := &discoveryv3.DiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce(), ResourceNames: c.subs[typ]}
		if rejErr := c.check(typ, got); rejErr != nil {
			ack.VersionInfo = c.version[typ]
			ack.ErrorDetail = &statuspb.Status{Code: 3, Message: rejErr.Error()}
			c.record(typ, proto.Size(resp), nil, nil, true, false)
		} else {
			c.version[typ] = resp.GetVersionInfo()
			ack.VersionInfo = resp.GetVersionInfo()
			full := slices.Contains(wildcardTypes, typ)
			c.record(typ, proto.Size(resp), got, nil, false, full)
		}
		if err := st.Send(ack); err != nil {
			return err
		}
		// Follow references as Envoy does: new subscriptions go out after the ACK.
		for _, dep := range c.dependencies() {
			if slices.Equal(dep.names, c.subs[dep.typ]) {
				continue
			}
			c.subs[dep.typ] = dep.names
			c.dropUnsubscribed(dep.typ, dep.names)
			if err := st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: dep.typ, ResourceNames: dep.names,
				VersionInfo: c.version[dep.typ], ResponseNonce: c.nonce[dep.typ]}); err != nil {
				return err
			}
		}
	}
}

func (c *adsClient) runDelta(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient, node *corev3.Node) error {
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	for i, typ := range wildcardTypes {
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, InitialResourceVersions: c.versionsOf(typ)}
		if i == 0 {
			req.Node = node
		}
		if err := st.Send(req); err != nil {
			return err
		}
	}
	if c.resumed {
		for typ, refs := range map[string]string{resource.RouteType: resource.ScopedRouteType, resource.EndpointType: resource.ClusterType} {
			var names []string
			for _, n := range c.deltaSubs[refs] {
				names = append(names, n)
			}
			if len(names) == 0 {
				continue
			}
			if err := st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResourceNamesSubscribe: names,
				InitialResourceVersions: c.versionsOf(typ)}); err != nil {
				return err
			}
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return ignoreEnd(err)
		}
		typ := resp.GetTypeUrl()
		got := map[string]proto.Message{}
		for _, r := range resp.GetResources() {
			m, name, err := decode(r.GetResource())
			if err != nil {
				return err
			}
			if name != r.GetName() {
				return fmt.Errorf("delta resource named %q holds %q", r.GetName(), name)
			}
			got[name] = m
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
		if rejErr := c.check(typ, got); rejErr != nil {
			ack.ErrorDetail = &statuspb.Status{Code: 3, Message: rejErr.Error()}
			c.record(typ, proto.Size(resp), nil, nil, true, false)
		} else {
			c.record(typ, proto.Size(resp), got, resp.GetRemovedResources(), false, false)
			c.mu.Lock()
			if c.versions[typ] == nil {
				c.versions[typ] = map[string]string{}
			}
			for _, r := range resp.GetResources() {
				c.versions[typ][r.GetName()] = r.GetVersion()
			}
			for _, n := range resp.GetRemovedResources() {
				delete(c.versions[typ], n)
			}
			c.received[typ] += len(resp.GetResources())
			c.mu.Unlock()
		}
		if err := st.Send(ack); err != nil {
			return err
		}
		if err := c.followDelta(st, typ, got, resp.GetRemovedResources()); err != nil {
			return err
		}
	}
}

// followDelta subscribes to what the response's new scopes and EDS clusters name and unsubscribes
// from what the removed ones named, as Envoy does: work in proportion to the change.
func (c *adsClient) followDelta(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, typ string, got map[string]proto.Message, removed []string) error {
	var depType string
	var refs func(m proto.Message) string
	switch typ {
	case resource.ScopedRouteType:
		depType = resource.RouteType
		refs = func(m proto.Message) string { return m.(*routev3.ScopedRouteConfiguration).GetRouteConfigurationName() }
	case resource.ClusterType:
		depType = resource.EndpointType
		refs = func(m proto.Message) string {
			cl := m.(*clusterv3.Cluster)
			if cl.GetType() != clusterv3.Cluster_EDS {
				return ""
			}
			if n := cl.GetEdsClusterConfig().GetServiceName(); n != "" {
				return n
			}
			return cl.GetName()
		}
	default:
		return nil
	}
	if c.deltaSubs == nil {
		c.deltaSubs = map[string]map[string]string{}
	}
	if c.deltaSubs[typ] == nil {
		c.deltaSubs[typ] = map[string]string{} // resource name -> the name it references
	}
	refsOf := c.deltaSubs[typ]
	var add, remove []string
	for name, m := range got {
		ref := refs(m)
		old, had := refsOf[name]
		if had && old == ref {
			continue
		}
		if had && old != "" {
			remove = append(remove, old)
		}
		if ref != "" {
			add = append(add, ref)
			refsOf[name] = ref
		} else {
			delete(refsOf, name)
		}
	}
	for _, name := range removed {
		if old, had := refsOf[name]; had {
			remove = append(remove, old)
			delete(refsOf, name)
		}
	}
	if len(add) == 0 && len(remove) == 0 {
		return nil
	}
	c.mu.Lock()
	for _, name := range remove {
		delete(c.res[depType], name)
	}
	c.mu.Unlock()
	return st.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: depType, ResourceNamesSubscribe: add, ResourceNamesUnsubscribe: remove})
}

func ignoreEnd(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

func (c *adsClient) versionsOf(typ string) map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.versions[typ])
}

// check runs the client's reject hook.
func (c *adsClient) check(typ string, got map[string]proto.Message) error {
	if c.reject == nil {
		return nil
	}
	return c.reject(typ, got)
}

// record applies one response: accepted resources replace or add (the whole set for full-state
// types), removed ones go; a rejection changes nothing but is counted.
func (c *adsClient) record(typ string, size int, got map[string]proto.Message, removed []string, rejected bool, fullState ...bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.responses[typ]++
	c.bytes += int64(size)
	if rejected {
		c.nacks++
		c.changed.Broadcast()
		return
	}
	if len(fullState) > 0 && fullState[0] {
		c.res[typ] = map[string]proto.Message{}
	}
	now := time.Now()
	for name, m := range got {
		if c.lean && typ == resource.RouteType {
			// Keep only what the tests and benchmarks look at: memory stays small at 10,000 tenants.
			m = leanRoute(m.(*routev3.RouteConfiguration))
		}
		c.res[typ][name] = m
		if typ == resource.RouteType || typ == resource.ScopedRouteType {
			c.seenAt[shortType(typ)+"/"+name] = now
		}
	}
	for _, name := range removed {
		delete(c.res[typ], name)
	}
	c.changed.Broadcast()
}

type dependency struct {
	typ   string
	names []string
}

// dependencies are the named subscriptions the current state calls for: the route configurations of
// the scopes and the endpoints of the EDS clusters. Receive goroutine only.
func (c *adsClient) dependencies() []dependency {
	c.mu.Lock()
	defer c.mu.Unlock()
	var routes, eds []string
	for _, m := range c.res[resource.ScopedRouteType] {
		routes = append(routes, m.(*routev3.ScopedRouteConfiguration).GetRouteConfigurationName())
	}
	for _, m := range c.res[resource.ClusterType] {
		cl := m.(*clusterv3.Cluster)
		if cl.GetType() == clusterv3.Cluster_EDS {
			name := cl.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = cl.GetName()
			}
			eds = append(eds, name)
		}
	}
	slices.Sort(routes)
	slices.Sort(eds)
	return []dependency{{resource.RouteType, routes}, {resource.EndpointType, eds}}
}

// dropUnsubscribed forgets resources no longer subscribed, as Envoy does.
func (c *adsClient) dropUnsubscribed(typ string, names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name := range c.res[typ] {
		if _, found := slices.BinarySearch(names, name); !found {
			delete(c.res[typ], name)
		}
	}
}

func decode(a *anypb.Any) (proto.Message, string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, "", err
	}
	switch r := m.(type) {
	case *listenerv3.Listener:
		return r, r.GetName(), nil
	case *clusterv3.Cluster:
		return r, r.GetName(), nil
	case *endpointv3.ClusterLoadAssignment:
		return r, r.GetClusterName(), nil
	case *routev3.RouteConfiguration:
		return r, r.GetName(), nil
	case *routev3.ScopedRouteConfiguration:
		return r, r.GetName(), nil
	}
	return nil, "", fmt.Errorf("unexpected resource type %s", a.GetTypeUrl())
}

// waitFor blocks until cond holds on the client's state, or fails the test after timeout.
func (c *adsClient) waitFor(t testing.TB, timeout time.Duration, what string, cond func(c *adsClient) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		c.mu.Lock()
		c.changed.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond(c) {
		if c.err != nil {
			t.Fatalf("client %s: stream failed while waiting for %s: %v", c.node, what, c.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("client %s: timed out after %s waiting for %s; state: %s", c.node, timeout, what, c.describe())
		}
		c.changed.Wait()
	}
}

// has reports whether the client holds the named resource (c.mu held, inside waitFor).
func (c *adsClient) has(typ, name string) bool {
	_, ok := c.res[typ][name]
	return ok
}

// servable reports whether the client could route a request for the tenant's scope: scope, route
// configuration and the cluster (and, for EDS, endpoints) it sends to. c.mu held.
func (c *adsClient) servable(scope string) bool {
	sc, ok := c.res[resource.ScopedRouteType][scope]
	if !ok {
		return false
	}
	rc, ok := c.res[resource.RouteType][sc.(*routev3.ScopedRouteConfiguration).GetRouteConfigurationName()]
	if !ok {
		return false
	}
	for _, vh := range rc.(*routev3.RouteConfiguration).GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			cl, ok := c.res[resource.ClusterType][r.GetRoute().GetCluster()]
			if !ok {
				return false
			}
			if cl.(*clusterv3.Cluster).GetType() == clusterv3.Cluster_EDS && !c.has(resource.EndpointType, cl.(*clusterv3.Cluster).GetName()) {
				return false
			}
		}
	}
	return true
}

func (c *adsClient) counts() (responses map[string]int, nacks int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.responses {
		out[k] = v
	}
	return out, c.nacks
}

func (c *adsClient) describe() string {
	out := ""
	for _, typ := range []string{resource.ListenerType, resource.ClusterType, resource.EndpointType, resource.ScopedRouteType, resource.RouteType} {
		names := make([]string, 0, len(c.res[typ]))
		for n := range c.res[typ] {
			names = append(names, n)
		}
		slices.Sort(names)
		if len(names) > 8 {
			names = append(names[:8], fmt.Sprintf("... (%d)", len(c.res[typ])))
		}
		out += fmt.Sprintf("%s=%v ", shortType(typ), names)
	}
	return out
}
