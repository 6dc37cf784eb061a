package extauthz

import (
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/grpcopts"
)

// Run with:
//
//	go test ./extauthz -run '^$' -bench . -benchtime 2s
//
// BenchmarkCheck measures, in one run, the Check service over real loopback gRPC against a no-op
// Check server (the transport's own ceiling), and the handler alone on a cache hit and on RS256,
// ES256 and EdDSA misses. cpu-ns/op is the process's user+system CPU per Check.

// noopServer answers every Check with a fixed OK: what gRPC itself costs.
type noopServer struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (n noopServer) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return n.resp, nil
}

// wireOnly is a client codec that marshals the request as protobuf and keeps the response as the
// bytes it arrived as. Envoy, not tenantgate, pays for decoding the response; the benchmark client
// shares the machine with the server, so it must not charge a richer response's decoding to it.
type wireOnly struct{}

type rawResponse struct{ n int }

func (wireOnly) Marshal(v any) ([]byte, error) { return proto.Marshal(v.(proto.Message)) }
func (wireOnly) Name() string                  { return "proto" }
func (wireOnly) Unmarshal(data []byte, v any) error {
	v.(*rawResponse).n = len(data)
	return nil
}

// checkOnWire is one Check whose response is left undecoded.
func checkOnWire(ctx context.Context, conn *grpc.ClientConn, req *authv3.CheckRequest) error {
	var out rawResponse
	if err := conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", req, &out, grpc.ForceCodec(wireOnly{})); err != nil {
		return err
	}
	if out.n == 0 {
		return errors.New("empty response")
	}
	return nil
}

// serveLoopback serves srv on 127.0.0.1, with the options the binary serves Envoy's calls with, and
// returns a client connected to it.
func serveLoopback(b *testing.B, srv authv3.AuthorizationServer) *grpc.ClientConn {
	b.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := grpc.NewServer(grpcopts.DataPlane()...)
	authv3.RegisterAuthorizationServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		conn.Close()
		g.Stop()
	})
	return conn
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs fn b.N times and reports (and returns) the CPU it took per operation.
func measure(b *testing.B, fn func()) float64 {
	b.ReportAllocs()
	c0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		fn()
	}
	b.StopTimer()
	cpu := float64(cpuTime()-c0) / float64(b.N)
	b.ReportMetric(cpu, "cpu-ns/op")
	return cpu
}

func BenchmarkCheck(b *testing.B) {
	rs := newRSASigner(b, "rs1", 0)
	es := newECSigner(b, "es1", elliptic.P256(), "ES256")
	ed := newEdSigner(b, "ed1")
	js := newJWKSServer(b, jwksOf(b, rs, es, ed))
	iss := issuerFor(js, mainIss)
	claims := claimsFor(mainIss, acme.ID)
	cached := startServer(b, authzConfig(iss), allTenants(), js.Client())
	noCache := authzConfig(iss)
	noCache.CacheSize = 0
	uncached := startServer(b, noCache, allTenants(), js.Client())
	waitReady(b, cached)
	waitReady(b, uncached)

	tok := rs.sign(b, nil, claims)
	req := checkReq("acme.tenants.example.com", map[string]string{
		"authorization": "Bearer " + tok, "user-agent": "bench/1.0", "accept": "*/*",
		"x-request-id": "7f0c1e7e-0f4b-4e55-9a8b-0c5d7a6e1f00", "x-tenant-id": "spoofed",
	}, nil)
	if check(b, cached, req).GetOkResponse() == nil {
		b.Fatal("benchmark request is not allowed")
	}

	// Two baselines: a no-op server answering a bare OK (the transport's own ceiling) and one
	// answering a fixed, prebuilt allow of the same shape as ours (the ceiling for carrying the
	// stamped headers and metadata, so the ratio isolates the handler).
	var emptyNs, fixedNs float64
	b.Run("grpc/noop-empty", func(b *testing.B) {
		client := serveLoopback(b, noopServer{resp: &authv3.CheckResponse{Status: &status.Status{}}})
		emptyNs = parallelCheck(b, client, req)
	})
	b.Run("grpc/noop-fixed-allow", func(b *testing.B) {
		client := serveLoopback(b, noopServer{resp: allow(&acme, &Claims{Subject: "user-1"}, nil, nil)})
		fixedNs = parallelCheck(b, client, req)
	})
	b.Run("grpc/tenantgate", func(b *testing.B) {
		client := serveLoopback(b, cached)
		ns := parallelCheck(b, client, req)
		if emptyNs > 0 && fixedNs > 0 {
			b.ReportMetric(emptyNs/ns, "throughput-vs-noop-empty")
			b.ReportMetric(fixedNs/ns, "throughput-vs-noop-fixed")
		}
	})
	b.Run("handler/cache-hit", func(b *testing.B) {
		ctx := context.Background()
		_ = measure(b, func() { _, _ = cached.Check(ctx, req) })
	})
	for _, s := range []signer{rs, es, ed} {
		tok := s.sign(b, nil, claims)
		req := checkReq("acme.tenants.example.com", bearer(tok), nil)
		if check(b, uncached, req).GetOkResponse() == nil {
			b.Fatalf("%s request is not allowed", s.alg)
		}
		// The signature check alone, for the same token, with golang-jwt's method and the bare
		// public key: the floor of a miss for a verifier that keeps nothing per key. The handler
		// verifies RS* with the modulus prepared once per key, so its RS256 miss may cost less.
		var cryptoNs float64
		b.Run("signature-only-"+s.alg, func(b *testing.B) {
			dot := strings.LastIndexByte(tok, '.')
			sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
			if err != nil {
				b.Fatal(err)
			}
			method, pub := jwt.GetSigningMethod(s.alg), s.priv.Public()
			cryptoNs = measure(b, func() {
				if err := method.Verify(tok[:dot], sig, pub); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run("handler/miss-"+s.alg, func(b *testing.B) {
			ctx := context.Background()
			ns := measure(b, func() { _, _ = uncached.Check(ctx, req) })
			if cryptoNs > 0 {
				b.ReportMetric(ns/cryptoNs, "x-signature-only")
			}
		})
	}
}

// parallelCheck calls Check from many goroutines and returns the wall time per call.
func parallelCheck(b *testing.B, conn *grpc.ClientConn, req *authv3.CheckRequest) float64 {
	ctx := context.Background()
	if resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, req); err != nil || resp.GetStatus().GetCode() != 0 {
		b.Fatalf("Check: %v %v", resp, err)
	}
	b.SetParallelism(32)
	b.ReportAllocs()
	c0 := cpuTime()
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := checkOnWire(ctx, conn, req); err != nil {
				b.Errorf("Check failed: %v", err)
				return
			}
		}
	})
	b.StopTimer()
	ns := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(1e9/ns, "checks/s")
	return ns
}

// BenchmarkCheckThroughputRatio measures the same loopback gRPC Checks as BenchmarkCheck/grpc, but
// interleaved: each of fifty rounds calls the no-op servers and tenantgate in turn, so a machine
// whose load drifts during the run weighs on all of them alike. b.N calls go to each server.
func BenchmarkCheckThroughputRatio(b *testing.B) {
	ed := newEdSigner(b, "ed1")
	js := newJWKSServer(b, jwksOf(b, ed))
	s := startServer(b, authzConfig(issuerFor(js, mainIss)), allTenants(), js.Client())
	waitReady(b, s)
	req := checkReq("acme.tenants.example.com", map[string]string{
		"authorization": "Bearer " + ed.sign(b, nil, claimsFor(mainIss, acme.ID)), "user-agent": "bench/1.0",
	}, nil)
	clients := []*grpc.ClientConn{
		serveLoopback(b, noopServer{resp: &authv3.CheckResponse{Status: &status.Status{}}}),
		serveLoopback(b, noopServer{resp: allow(&acme, &Claims{Subject: "user-1"}, nil, nil)}),
		serveLoopback(b, s),
	}
	for _, c := range clients {
		if resp, err := authv3.NewAuthorizationClient(c).Check(context.Background(), req); err != nil || resp.GetStatus().GetCode() != 0 {
			b.Fatalf("Check: %v %v", resp, err)
		}
	}
	const rounds, workers = 50, 32
	var spent [3]time.Duration
	b.ResetTimer()
	for round := range rounds {
		calls := b.N / rounds
		if round == 0 {
			calls += b.N % rounds
		}
		for i := range clients {
			c := clients[(i+round)%len(clients)] // rotate who goes first
			t0 := time.Now()
			var wg sync.WaitGroup
			for w := range workers {
				n := calls / workers
				if w == 0 {
					n += calls % workers
				}
				wg.Go(func() {
					for range n {
						if err := checkOnWire(context.Background(), c, req); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			spent[(i+round)%len(clients)] += time.Since(t0)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(spent[0])/float64(spent[2]), "tenantgate-vs-noop-empty")
	b.ReportMetric(float64(spent[1])/float64(spent[2]), "tenantgate-vs-noop-fixed")
	b.ReportMetric(float64(b.N)/spent[2].Seconds(), "tenantgate-checks/s")
	b.ReportMetric(float64(b.N)/spent[0].Seconds(), "noop-empty-checks/s")
}
