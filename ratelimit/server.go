package ratelimit

import (
	"context"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

var _ rlsv3.RateLimitServiceServer = (*Limiter)(nil)

// Register adds the limiter to a gRPC server as envoy.service.ratelimit.v3.RateLimitService.
func (l *Limiter) Register(s *grpc.Server) { rlsv3.RegisterRateLimitServiceServer(s, l) }

// ShouldRateLimit decides one request for Envoy.
func (l *Limiter) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if req.GetDomain() != l.domain {
		l.metrics.ignoredDomain.Inc()
		return allowAll(len(req.GetDescriptors())), nil
	}
	q := l.parse(req)
	if q.Plan == nil {
		return allowAll(len(req.GetDescriptors())), nil
	}
	d, err := l.decide(ctx, q)
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return l.texts.respond(q, d), nil
}
