package xdsfetch_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/tenantgate/tenantgate/internal/xdsfetch"
)

// partialADS is a state-of-the-world ADS server that uses the latitude the xDS protocol gives for
// routes: it first serves one scope, then two, and answers each route subscription with only the
// route configurations it has not sent on the stream yet.
type partialADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
}

func (partialADS) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	nonce, scopeAnswers := 0, 0
	sentRoutes := map[string]bool{}
	send := func(typ string, msgs ...proto.Message) error {
		nonce++
		resp := &discoveryv3.DiscoveryResponse{TypeUrl: typ, VersionInfo: strconv.Itoa(nonce), Nonce: strconv.Itoa(nonce)}
		for _, m := range msgs {
			a, err := anypb.New(m)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, a)
		}
		return stream.Send(resp)
	}
	scope := func(n string) proto.Message {
		return &routev3.ScopedRouteConfiguration{Name: "scope-" + n, RouteConfigurationName: "routes-" + n,
			Key: &routev3.ScopedRouteConfiguration_Key{Fragments: []*routev3.ScopedRouteConfiguration_Key_Fragment{
				{Type: &routev3.ScopedRouteConfiguration_Key_Fragment_StringKey{StringKey: n + ".example"}}}}}
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		switch req.GetTypeUrl() {
		case resource.ClusterType, resource.ListenerType:
			if req.GetResponseNonce() == "" {
				err = send(req.GetTypeUrl())
			}
		case resource.ScopedRouteType:
			switch scopeAnswers {
			case 0:
				err = send(resource.ScopedRouteType, scope("a"))
			case 1:
				err = send(resource.ScopedRouteType, scope("a"), scope("b"))
			}
			scopeAnswers++
		case resource.RouteType:
			var routes []proto.Message
			for _, n := range req.GetResourceNames() {
				if !sentRoutes[n] {
					sentRoutes[n] = true
					routes = append(routes, &routev3.RouteConfiguration{Name: n})
				}
			}
			if len(routes) > 0 {
				err = send(resource.RouteType, routes...)
			}
		}
		if err != nil {
			return err
		}
	}
}

func TestFetch_StateOfTheWorldRoutesArriveInParts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, partialADS{})
	go func() { _ = srv.Serve(l) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cfg, err := xdsfetch.Fetch(ctx, conn, &corev3.Node{Id: "test"})
	if err != nil {
		t.Fatalf("Fetch: %v (a route sent in an earlier response must be kept)", err)
	}
	if len(cfg.Scopes) != 2 || len(cfg.Routes) != 2 {
		t.Fatalf("got %d scopes and %d route configurations, want 2 and 2", len(cfg.Scopes), len(cfg.Routes))
	}
}
