// Package grpcopts holds the options of the gRPC server that answers Envoy's per-request calls
// (ext_authz Check and ShouldRateLimit), so that the binary and the benchmarks, which compare that
// server with a no-op one, serve with the same settings.
package grpcopts

import (
	"runtime"

	"google.golang.org/grpc"
)

// DataPlane returns the server options for the per-request services.
//
// Stream workers: by default grpc-go starts a goroutine for every call, and each one grows its stack
// again (about a fifth of a no-op server's CPU per call under load, measured in
// ratelimit's BenchmarkShouldRateLimit). Workers are reused goroutines; a call arriving while all are
// busy still gets its own goroutine, so a slow call never queues another. grpc-go marks the option
// experimental; dropping it would cost CPU, not correctness.
func DataPlane() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(10000),
		// Enough for the calls in flight on a busy node (64 streams saturate two CPUs in the
		// benchmarks); idle workers cost a few MiB of stacks at most.
		grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0)))),
	}
}
