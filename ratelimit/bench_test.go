package ratelimit

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// The benchmarks serve ShouldRateLimit on loopback gRPC in this process and drive it from a child
// process (this test binary, running TestBenchClientProcess) with 64 concurrent streams on one
// connection, so that this process's CPU time is the service's alone. Run:
//
//	go test ./ratelimit -run '^$' -bench ShouldRateLimit -benchtime 20000x
//
// Reported per run: service CPU per decision (us-cpu/op), throughput (decisions/s) and its ratio to
// the no-op server measured first in the same run (pct-of-noop), and the client-observed p99.

const benchStreams = 64

// noopServer answers OK to everything at once: the baseline.
type noopServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (noopServer) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return allowAll(len(req.GetDescriptors())), nil
}

func benchPlans() map[string]config.Plan {
	return map[string]config.Plan{
		"under": {Windows: []config.Window{win(1_000_000_000, time.Hour)}, FailureMode: "open"},
		"over":  {Windows: []config.Window{win(1, time.Hour)}, FailureMode: "open"},
	}
}

func BenchmarkShouldRateLimit(b *testing.B) {
	const underID, overID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e"
	tenants := lookup([]tenant.Tenant{
		{ID: underID, Slug: "under", Plan: "under", Status: tenant.Active},
		{ID: overID, Slug: "over", Plan: "over", Status: tenant.Active},
	})
	baseline := map[int]float64{} // descriptors -> no-op decisions/s
	for _, descs := range []int{1, 2} {
		b.Run(fmt.Sprintf("noop/descriptors=%d", descs), func(b *testing.B) {
			baseline[descs] = benchServe(b, noopServer{}, underID, descs, 0)
		})
	}
	for _, st := range []string{"memory", "redis"} {
		for _, descs := range []int{1, 2} {
			for _, load := range []string{"under", "over"} {
				b.Run(fmt.Sprintf("%s/descriptors=%d/%s", st, descs, load), func(b *testing.B) {
					var store Store = NewMemoryStore()
					if st == "redis" {
						store = openBenchRedisStore(b)
					}
					// A generous deadline: on a loaded machine a 50ms one trips the breaker and the
					// figures would include failure-mode decisions, which skip Redis.
					l := newTestLimiter(b, store, func(c *Config) { c.Plans, c.Tenants, c.Timeout = benchPlans(), tenants, time.Second })
					id := underID
					if load == "over" {
						id = overID
						should(b, l, benchRequest(id, descs)) // the one allowed: every call from now on is over
					}
					benchServe(b, l, id, descs, baseline[descs])
					// Decisions the store did not make (deadline missed) would flatter the figures.
					b.ReportMetric(testutil.ToFloat64(l.metrics.okFailOpen), "failed-open")
				})
			}
		}
	}
}

// openBenchRedisStore is a Redis store on the test Redis with the production client settings.
func openBenchRedisStore(b *testing.B) *RedisStore {
	r := testenv.NewRedis(b)
	client, err := OpenRedis(RedisOptions{URL: r.URL, Timeout: time.Second, PoolSize: 64, MinIdleConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	s, err := NewRedisStore(client, r.Prefix)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchRequest(tenantID string, descs int) *rlsv3.RateLimitRequest {
	req := tenantReq(tenantID)
	if descs == 2 {
		req.Descriptors = append(req.Descriptors, entries(entryTenant, tenantID, entryEndpoint, "orders"))
	}
	return req
}

// benchServe serves srv, has the child process make b.N calls, and reports the figures; it returns
// the throughput.
func benchServe(b *testing.B, srv rlsv3.RateLimitServiceServer, tenantID string, descs int, baseline float64) float64 {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	defer s.Stop()

	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchClientProcess$")
	cmd.Env = append(os.Environ(),
		"TG_RL_BENCH_ADDR="+lis.Addr().String(), "TG_RL_BENCH_N="+strconv.Itoa(b.N),
		"TG_RL_BENCH_TENANT="+tenantID, "TG_RL_BENCH_DESCS="+strconv.Itoa(descs))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := processCPU()
	b.ResetTimer()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var result []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "BENCH-RESULT "); ok {
			result = strings.Fields(rest)
		}
	}
	if err := cmd.Wait(); err != nil || len(result) != 3 {
		b.Fatalf("client process: %v (result %v)", err, result)
	}
	b.StopTimer()
	cpu := processCPU() - cpu0
	elapsed, _ := strconv.ParseInt(result[0], 10, 64)
	p99, _ := strconv.ParseInt(result[1], 10, 64)
	if result[2] != "0" {
		b.Fatalf("%s calls failed", result[2])
	}
	rate := float64(b.N) / time.Duration(elapsed).Seconds()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "us-cpu/op")
	b.ReportMetric(rate, "decisions/s")
	b.ReportMetric(float64(time.Duration(p99).Microseconds()), "us-p99")
	if baseline > 0 {
		b.ReportMetric(100*rate/baseline, "pct-of-noop")
	}
	return rate
}

// processCPU is this process's user+system CPU time (the client runs in another process).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBenchClientProcess is the benchmarks' client; it runs only as their child process.
func TestBenchClientProcess(t *testing.T) {
	addr := os.Getenv("TG_RL_BENCH_ADDR")
	if addr == "" {
		t.Skip("the benchmarks' client process; not a test")
	}
	n, _ := strconv.Atoi(os.Getenv("TG_RL_BENCH_N"))
	descs, _ := strconv.Atoi(os.Getenv("TG_RL_BENCH_DESCS"))
	req := benchRequest(os.Getenv("TG_RL_BENCH_TENANT"), descs)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := rlsv3.NewRateLimitServiceClient(conn)
	if _, err := client.ShouldRateLimit(context.Background(), req); err != nil { // connect
		t.Fatal(err)
	}
	var mu sync.Mutex
	var lat []time.Duration
	var failed int
	var wg sync.WaitGroup
	start := time.Now()
	for w := range benchStreams {
		calls := n / benchStreams
		if w < n%benchStreams {
			calls++
		}
		wg.Go(func() {
			mine := make([]time.Duration, 0, calls)
			bad := 0
			for range calls {
				t0 := time.Now()
				if _, err := client.ShouldRateLimit(context.Background(), req); err != nil {
					bad++
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			failed += bad
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	p99 := time.Duration(0)
	if len(lat) > 0 {
		p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	fmt.Printf("BENCH-RESULT %d %d %d\n", elapsed.Nanoseconds(), p99.Nanoseconds(), failed)
}

// BenchmarkHandler measures ShouldRateLimit itself, without gRPC: the limiter's own cost per
// decision (parse, plan, store, response), single-threaded.
func BenchmarkHandler(b *testing.B) {
	const id = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	tenants := lookup([]tenant.Tenant{{ID: id, Slug: "under", Plan: "under", Status: tenant.Active}})
	for _, st := range []string{"memory", "redis"} {
		for _, descs := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/descriptors=%d", st, descs), func(b *testing.B) {
				var store Store = NewMemoryStore()
				if st == "redis" {
					store = openBenchRedisStore(b)
				}
				l := newTestLimiter(b, store, func(c *Config) { c.Plans, c.Tenants = benchPlans(), tenants })
				req := benchRequest(id, descs)
				ctx := context.Background()
				b.ReportAllocs()
				cpu0 := processCPU()
				for b.Loop() {
					if _, err := l.ShouldRateLimit(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/1000, "us-cpu/op")
			})
		}
	}
}
