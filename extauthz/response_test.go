package extauthz

import (
	"context"
	"net"
	"net/http"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestResponses_PassEnvoyValidation: every response Check can give passes the protos' own
// validation rules, and crosses a real gRPC connection intact.
func TestResponses_PassEnvoyValidation(t *testing.T) {
	for r := ReasonOK + 1; r < reasonCount; r++ {
		resp := deny(r)
		if err := resp.ValidateAll(); err != nil {
			t.Errorf("denial %s: %v", r, err)
		}
		// A 503 travels as error_response, every other denial as denied_response.
		denied := resp.GetDeniedResponse()
		if denied == nil {
			denied = resp.GetErrorResponse()
		}
		if got := denied.GetStatus().GetCode(); int(got) != r.HTTPStatus() {
			t.Errorf("denial %s has status %d, want %d", r, got, r.HTTPStatus())
		}
	}
	c := Claims{Subject: "user-1"}
	if err := allow(&acme, &c, []string{"x-tenant-role"}, []string{"authorization"}).ValidateAll(); err != nil {
		t.Errorf("allow: %v", err)
	}
}

func TestCheck_OverLoopbackGRPC(t *testing.T) {
	ed := newEdSigner(t, "ed1")
	js := newJWKSServer(t, jwksOf(t, ed))
	s := startServer(t, authzConfig(issuerFor(js, mainIss)), allTenants(), js.Client())
	waitReady(t, s)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	authv3.RegisterAuthorizationServer(g, s)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = g.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		<-served
	})
	client := authv3.NewAuthorizationClient(conn)
	tok := ed.sign(t, nil, claimsFor(mainIss, acme.ID))
	for range 2 { // a miss, then the shared response of a cache hit
		resp, err := client.Check(context.Background(), checkReq("acme.tenants.example.com", bearer(tok), nil))
		if err != nil {
			t.Fatal(err)
		}
		assertAllowed(t, resp, acme, "user-1")
	}
	resp, err := client.Check(context.Background(), checkReq("globex.tenants.example.com", bearer(tok), nil))
	if err != nil {
		t.Fatal(err)
	}
	assertDenied(t, resp, http.StatusForbidden, tok)
}
