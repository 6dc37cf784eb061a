package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// slowServer answers every method after a delay, standing in for an in-flight Check at shutdown.
func slowServer(t *testing.T, delay time.Duration) (*grpc.Server, string) {
	t.Helper()
	s := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var in emptypb.Empty
		if err := stream.RecvMsg(&in); err != nil {
			return err
		}
		select {
		case <-time.After(delay):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
		return stream.SendMsg(&emptypb.Empty{})
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(l) }()
	return s, l.Addr().String()
}

func TestStopGRPC(t *testing.T) {
	tests := []struct {
		name        string
		handler     time.Duration
		deadline    time.Duration
		wantCallErr bool
	}{
		{"in-flight call drains within the deadline", 300 * time.Millisecond, 5 * time.Second, false},
		{"call past the deadline is cut off", 10 * time.Second, 200 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, addr := slowServer(t, tt.handler)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			callErr := make(chan error, 1)
			go func() {
				callErr <- conn.Invoke(context.Background(), "/test.Slow/Call", &emptypb.Empty{}, &emptypb.Empty{})
			}()
			time.Sleep(100 * time.Millisecond) // let the call reach the handler

			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			start := time.Now()
			stopGRPC(ctx, s)
			if took := time.Since(start); took > tt.deadline+2*time.Second {
				t.Errorf("stopGRPC took %s, deadline %s", took, tt.deadline)
			}
			err = <-callErr
			if (err != nil) != tt.wantCallErr {
				t.Fatalf("in-flight call: %v, want error=%v", err, tt.wantCallErr)
			}
			if err != nil && status.Code(err) != codes.Unavailable && status.Code(err) != codes.Canceled {
				t.Errorf("cut-off call code = %s", status.Code(err))
			}
			// After the stop nothing is accepted.
			late, cancelLate := context.WithTimeout(context.Background(), time.Second)
			defer cancelLate()
			if err := conn.Invoke(late, "/test.Slow/Call", &emptypb.Empty{}, &emptypb.Empty{}); err == nil {
				t.Error("a call after shutdown succeeded")
			}
		})
	}
}

func TestWatchHealth_ChecksGateOnlyTheirServices(t *testing.T) {
	svc := func(name string) *grpc.ServiceDesc {
		return &grpc.ServiceDesc{ServiceName: name, HandlerType: (*any)(nil)}
	}
	down := errors.New("down")
	up := func(context.Context) error { return nil }
	failing := func(context.Context) error { return down }
	tests := []struct {
		name  string
		setup func(a *app)
		want  map[string]healthpb.HealthCheckResponse_ServingStatus
	}{
		{
			name: "a failed check gates the process and only the service it names",
			setup: func(a *app) {
				a.addReadyCheck("keys", failing, "test.Authz")
				a.addReadyCheck("snapshot", up, gatesEveryService)
			},
			want: map[string]healthpb.HealthCheckResponse_ServingStatus{
				"":               healthpb.HealthCheckResponse_NOT_SERVING,
				"test.Authz":     healthpb.HealthCheckResponse_NOT_SERVING,
				"test.RateLimit": healthpb.HealthCheckResponse_SERVING,
			},
		},
		{
			name: "a failed check gating every service",
			setup: func(a *app) {
				a.addReadyCheck("snapshot", failing, gatesEveryService)
			},
			want: map[string]healthpb.HealthCheckResponse_ServingStatus{
				"":               healthpb.HealthCheckResponse_NOT_SERVING,
				"test.Authz":     healthpb.HealthCheckResponse_NOT_SERVING,
				"test.RateLimit": healthpb.HealthCheckResponse_NOT_SERVING,
			},
		},
		{
			// Redis down: the rate limiter answers in each plan's failure mode, so nothing stops serving.
			name: "a failed degrading check gates nothing",
			setup: func(a *app) {
				a.addDegradingCheck("ratelimit redis", failing, "each plan's failure mode decides")
				a.addReadyCheck("snapshot", up, gatesEveryService)
			},
			want: map[string]healthpb.HealthCheckResponse_ServingStatus{
				"":               healthpb.HealthCheckResponse_SERVING,
				"test.Authz":     healthpb.HealthCheckResponse_SERVING,
				"test.RateLimit": healthpb.HealthCheckResponse_SERVING,
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{grpc: grpc.NewServer(), health: health.NewServer()}
			healthpb.RegisterHealthServer(a.grpc, a.health)
			a.grpc.RegisterService(svc("test.Authz"), struct{}{})
			a.grpc.RegisterService(svc("test.RateLimit"), struct{}{})
			tc.setup(a)

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = a.watchHealth(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			// The statuses start unset (NOT_FOUND) and are all set by the first round of checks.
			deadline := time.Now().Add(5 * time.Second)
			for name, st := range tc.want {
				for {
					resp, err := a.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
					if err == nil && resp.GetStatus() == st {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("health of %q = %v (%v), want %v", name, resp.GetStatus(), err, st)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

func TestReadyz_NamesEveryCheckAndFailsOnlyOnGatingOnes(t *testing.T) {
	down := errors.New("connection refused")
	up := func(context.Context) error { return nil }
	failing := func(context.Context) error { return down }
	tests := []struct {
		name     string
		setup    func(a *app)
		wantCode int
		wantBody string
	}{
		{
			name: "all up",
			setup: func(a *app) {
				a.addReadyCheck("tenant snapshot", up, gatesEveryService)
				a.addDegradingCheck("ratelimit redis", up, "each plan's failure mode decides")
			},
			wantCode: http.StatusOK,
			wantBody: "tenant snapshot: ok\nratelimit redis: ok\n",
		},
		{
			name: "redis down: still ready, and says so",
			setup: func(a *app) {
				a.addReadyCheck("tenant snapshot", up, gatesEveryService)
				a.addDegradingCheck("ratelimit redis", failing, "each plan's failure mode decides")
			},
			wantCode: http.StatusOK,
			wantBody: "tenant snapshot: ok\nratelimit redis: down, serving degraded (each plan's failure mode decides): connection refused\n",
		},
		{
			name: "snapshot not loaded: not ready",
			setup: func(a *app) {
				a.addReadyCheck("tenant snapshot", failing, gatesEveryService)
				a.addDegradingCheck("ratelimit redis", failing, "each plan's failure mode decides")
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: "tenant snapshot: not ready: connection refused\nratelimit redis: down, serving degraded (each plan's failure mode decides): connection refused\n",
		},
		{
			name: "a check gating one service makes the process unready",
			setup: func(a *app) {
				a.addReadyCheck("authz keys", failing, "test.Authz")
			},
			wantCode: http.StatusServiceUnavailable,
			wantBody: "authz keys: not ready: connection refused\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{}
			tc.setup(a)
			rec := httptest.NewRecorder()
			a.adminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody {
				t.Errorf("/readyz = %d %q, want %d %q", rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
			}
		})
	}
}
