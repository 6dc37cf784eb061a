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
	"github.com/tenantgate/tenantgate/internal/grpcopts"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// The benchmarks serve ShouldRateLimit on loopback gRPC in this process, with the binary's server
// options (internal/grpcopts) for the no-op server and ours alike, and drive it from a child process
// (this test binary, running TestBenchClientProcess) with 64 concurrent streams on one connection,
// so that this process's CPU time is the service's alone. Run:
//
//	go test ./ratelimit -run '^$' -bench ShouldRateLimit -benchtime 20000x
//
// Reported per run: service CPU per decision (us-cpu/op), throughput (decisions/s) and its ratio to
// the no-op server measured first in the same run (pct-of-noop), and the client-observed p99.
//
// Those runs are closed-loop: each stream sends its next call when the last one returns, so the
// machine is saturated and the p99 is mostly queueing behind the other 63 calls in flight. An Envoy
// fleet does not saturate its rate-limit service, so BenchmarkShouldRateLimitOpenLoop also offers a
// fixed rate (a quarter and half of the no-op server's capacity measured first in the same run) over
// the same 64 streams, and reports the latency from each call's scheduled send time (so that a stall delays
// the calls scheduled during it too, and counts against them):
//
//	go test ./ratelimit -run '^$' -bench ShouldRateLimitOpenLoop -benchtime 20000x

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
	baseline := noopRuns{}
	for _, descs := range []int{1, 2} {
		b.Run(fmt.Sprintf("noop/descriptors=%d", descs), func(b *testing.B) {
			baseline.add(b, descs, benchServe(b, noopServer{}, underID, descs, 0, 0))
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
					benchServe(b, l, id, descs, baseline.mean(descs), 0)
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

// BenchmarkShouldRateLimitOpenLoop measures latency at fixed offered loads: a quarter and half of
// the no-op server's closed-loop capacity, measured first in the same run, over 64 streams; one
// descriptor, under the limit.
func BenchmarkShouldRateLimitOpenLoop(b *testing.B) {
	const id = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	tenants := lookup([]tenant.Tenant{{ID: id, Slug: "under", Plan: "under", Status: tenant.Active}})
	capacity := noopRuns{}
	b.Run("noop/closed-loop", func(b *testing.B) {
		capacity.add(b, 1, benchServe(b, noopServer{}, id, 1, 0, 0))
	})
	for _, pct := range []int{25, 50} {
		rate := capacity.mean(1) * float64(pct) / 100
		b.Run(fmt.Sprintf("noop/open-loop-%d%%", pct), func(b *testing.B) {
			benchServe(b, noopServer{}, id, 1, capacity.mean(1), rate)
		})
		for _, st := range []string{"memory", "redis"} {
			b.Run(fmt.Sprintf("%s/open-loop-%d%%", st, pct), func(b *testing.B) {
				var store Store = NewMemoryStore()
				if st == "redis" {
					store = openBenchRedisStore(b)
				}
				l := newTestLimiter(b, store, func(c *Config) { c.Plans, c.Tenants, c.Timeout = benchPlans(), tenants, time.Second })
				benchServe(b, l, id, 1, capacity.mean(1), rate)
				b.ReportMetric(testutil.ToFloat64(l.metrics.okFailOpen), "failed-open")
			})
		}
	}
}

// noopRuns are the no-op server's throughputs so far, per descriptor count: with -count, every run's,
// so that a ratio is to their mean rather than to whichever run came last.
type noopRuns map[int][]float64

func (n noopRuns) add(b *testing.B, descs int, decisionsPerSec float64) {
	if b.N > 1 { // not the single call the framework makes first to size the run
		n[descs] = append(n[descs], decisionsPerSec)
	}
}

func (n noopRuns) mean(descs int) float64 {
	var sum float64
	for _, v := range n[descs] {
		sum += v
	}
	return sum / float64(max(1, len(n[descs])))
}

// benchTarget is a rate-limit service the client process drives: where it listens, and the CPU
// time it has used so far.
type benchTarget struct {
	addr string
	cpu  func() time.Duration
}

// serveInProcess serves srv on loopback gRPC in this process, with the options the binary serves
// Envoy's calls with; the server's CPU time is this process's.
func serveInProcess(b *testing.B, srv rlsv3.RateLimitServiceServer) benchTarget {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer(grpcopts.DataPlane()...)
	rlsv3.RegisterRateLimitServiceServer(s, srv)
	go func() { _ = s.Serve(lis) }()
	b.Cleanup(s.Stop)
	return benchTarget{addr: lis.Addr().String(), cpu: processCPU}
}

// benchServe serves srv in this process and drives it: see drive.
func benchServe(b *testing.B, srv rlsv3.RateLimitServiceServer, tenantID string, descs int, baseline, rate float64) float64 {
	return drive(b, serveInProcess(b, srv), tenantID, descs, baseline, rate)
}

// drive has the child process make b.N calls to target, and reports the figures; it returns the
// throughput. With rate > 0 the client offers rate calls a second (open loop) rather than calling
// as fast as it can.
func drive(b *testing.B, target benchTarget, tenantID string, descs int, baseline, rate float64) float64 {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchClientProcess$")
	cmd.Env = append(os.Environ(),
		"TG_RL_BENCH_ADDR="+target.addr, "TG_RL_BENCH_N="+strconv.Itoa(b.N),
		"TG_RL_BENCH_TENANT="+tenantID, "TG_RL_BENCH_DESCS="+strconv.Itoa(descs),
		"TG_RL_BENCH_RATE="+strconv.FormatFloat(rate, 'f', 0, 64))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := target.cpu()
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
	if err := cmd.Wait(); err != nil || len(result) != 4 {
		b.Fatalf("client process: %v (result %v)", err, result)
	}
	b.StopTimer()
	cpu := target.cpu() - cpu0
	elapsed, _ := strconv.ParseInt(result[0], 10, 64)
	p99, _ := strconv.ParseInt(result[1], 10, 64)
	p50, _ := strconv.ParseInt(result[3], 10, 64)
	if result[2] != "0" {
		b.Fatalf("%s calls failed", result[2])
	}
	done := float64(b.N) / time.Duration(elapsed).Seconds()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "us-cpu/op")
	b.ReportMetric(done, "decisions/s")
	b.ReportMetric(float64(time.Duration(p99).Microseconds()), "us-p99")
	if rate > 0 {
		b.ReportMetric(float64(time.Duration(p50).Microseconds()), "us-p50")
		b.ReportMetric(rate, "offered/s")
		return done
	}
	if baseline > 0 {
		b.ReportMetric(100*done/baseline, "pct-of-noop")
	}
	return done
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
	rate, _ := strconv.ParseFloat(os.Getenv("TG_RL_BENCH_RATE"), 64)
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
			// Open loop: this stream's calls are due every interval, the streams staggered; a
			// call's latency counts from when it was due.
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(benchStreams) / rate * float64(time.Second))
			}
			next := start.Add(interval * time.Duration(w) / benchStreams)
			for range calls {
				t0 := time.Now()
				if interval > 0 {
					time.Sleep(time.Until(next))
					t0 = next
					next = next.Add(interval)
				}
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
	var p99, p50 time.Duration
	if len(lat) > 0 {
		p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		p50 = lat[len(lat)/2]
	}
	fmt.Printf("BENCH-RESULT %d %d %d %d\n", elapsed.Nanoseconds(), p99.Nanoseconds(), failed, p50.Nanoseconds())
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
