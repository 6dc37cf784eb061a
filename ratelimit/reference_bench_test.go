//go:build linux

package ratelimit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// BenchmarkShouldRateLimitReference measures the reference service, envoyproxy/ratelimit, side by
// side with ours: in one run, by the same client (drive, TestBenchClientProcess), the no-op server,
// then the reference, then our limiter on Redis as in BenchmarkShouldRateLimit's redis case, each
// with one and two descriptors under the limit. A CPU figure quoted from another machine or day
// says nothing about this one; only figures from the same run compare. Build the reference and run:
//
//	TG_REFERENCE_RATELIMIT="$(bash scripts/reference-ratelimit.sh)" \
//	  go test ./ratelimit -run '^$' -bench ShouldRateLimitReference -benchtime 20000x -count 3
//
// The reference runs with its defaults (see referenceEnv): Redis over TCP, no local cache, no
// pipelining window, a pool of 10 connections; but its stats, though kept, are sent nowhere (it
// would send them to a statsd by default). Its config gives
// tenant_id, and endpoint under it, the "under" plan's limit (1e9 an hour). For each descriptor it
// sends Redis INCRBY and EXPIRE, all of a request's in one pipeline.
func BenchmarkShouldRateLimitReference(b *testing.B) {
	bin := os.Getenv("TG_REFERENCE_RATELIMIT")
	if bin == "" {
		b.Skip("set TG_REFERENCE_RATELIMIT to the reference binary: TG_REFERENCE_RATELIMIT=\"$(bash scripts/reference-ratelimit.sh)\"")
	}
	const underID = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" // BenchmarkShouldRateLimit's "under" tenant
	tenants := lookup([]tenant.Tenant{{ID: underID, Slug: "under", Plan: "under", Status: tenant.Active}})
	baseline := noopRuns{}
	for _, descs := range []int{1, 2} {
		b.Run(fmt.Sprintf("noop/descriptors=%d", descs), func(b *testing.B) {
			baseline.add(b, descs, benchServe(b, noopServer{}, underID, descs, 0, 0))
		})
	}
	// One process for all the runs of both descriptor counts (each runs with b.N=1 before each of
	// its -count runs, and a start costs seconds), stopped before ours runs so that it idles on none
	// of our CPUs meanwhile.
	// Latency at an offered load, not at saturation (see BenchmarkShouldRateLimitOpenLoop): a
	// quarter of the one-descriptor no-op capacity, for all three.
	rate := baseline.mean(1) / 4
	b.Run("noop/descriptors=1/open-loop-25%", func(b *testing.B) {
		benchServe(b, noopServer{}, underID, 1, baseline.mean(1), rate)
	})
	b.Run("reference", func(b *testing.B) {
		ref := startReference(b, bin)
		target := func(b *testing.B) benchTarget {
			return benchTarget{addr: ref.addr, cpu: func() time.Duration { return ref.cpu(b) }}
		}
		for _, descs := range []int{1, 2} {
			b.Run(fmt.Sprintf("descriptors=%d", descs), func(b *testing.B) {
				drive(b, target(b), ref.tenantID, descs, baseline.mean(descs), 0)
			})
		}
		b.Run("descriptors=1/open-loop-25%", func(b *testing.B) {
			drive(b, target(b), ref.tenantID, 1, baseline.mean(1), rate)
		})
	})
	ours := func(b *testing.B) *Limiter {
		return newTestLimiter(b, openBenchRedisStore(b), func(c *Config) { c.Plans, c.Tenants, c.Timeout = benchPlans(), tenants, time.Second })
	}
	for _, descs := range []int{1, 2} {
		b.Run(fmt.Sprintf("redis/descriptors=%d", descs), func(b *testing.B) {
			l := ours(b)
			benchServe(b, l, underID, descs, baseline.mean(descs), 0)
			b.ReportMetric(testutil.ToFloat64(l.metrics.okFailOpen), "failed-open")
		})
	}
	b.Run("redis/descriptors=1/open-loop-25%", func(b *testing.B) {
		l := ours(b)
		benchServe(b, l, underID, 1, baseline.mean(1), rate)
		b.ReportMetric(testutil.ToFloat64(l.metrics.okFailOpen), "failed-open")
	})
}

// referenceConfig is the reference's rate-limit config: the "under" plan's limit for a tenant, and
// for a tenant's endpoint (benchRequest's second descriptor).
const referenceConfig = `domain: tenantgate
descriptors:
  - key: tenant_id
    rate_limit:
      unit: hour
      requests_per_unit: 1000000000
    descriptors:
      - key: endpoint
        rate_limit:
          unit: hour
          requests_per_unit: 1000000000
`

// referenceProcess is a running reference service.
type referenceProcess struct {
	addr     string
	pid      int
	tenantID string // fresh per process: its Redis keys are not under a prefix of ours
	log      string // its stdout and stderr, for failure messages
}

// startReference starts the reference binary on free loopback ports against the test Redis, waits
// until it answers, and at cleanup kills it and deletes its Redis keys.
func startReference(b *testing.B, bin string) *referenceProcess {
	b.Helper()
	r := testenv.NewRedis(b)
	dir := b.TempDir()
	// RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY (default "config") is where it reads
	// its config files.
	if err := os.MkdirAll(filepath.Join(dir, "runtime", "ratelimit", "config"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "runtime", "ratelimit", "config", "config.yaml"), []byte(referenceConfig), 0o644); err != nil {
		b.Fatal(err)
	}
	ports := freePorts(b, 3)
	ref := &referenceProcess{
		addr:     net.JoinHostPort("127.0.0.1", ports[0]),
		tenantID: uuid.NewString(),
		log:      filepath.Join(dir, "ratelimit.log"),
	}
	logFile, err := os.Create(ref.log)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	// Its cache keys are <domain>_<key>_<value>_..._<window start> (src/limiter/cache_key.go), so
	// all of this process's start with this. Registered before the kill, so it runs after it.
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := testenv.DeletePrefix(ctx, r.Client, "tenantgate_tenant_id_"+ref.tenantID); err != nil {
			b.Errorf("delete the reference's Redis keys: %v", err)
		}
	})

	cmd := exec.Command(bin)
	cmd.Env = referenceEnv(r.URL, filepath.Join(dir, "runtime"), ports)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Dies with this process, should the benchmark be killed before its cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("start the reference %s: %v", bin, err)
	}
	ref.pid = cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	ref.waitReady(b, exited)
	return ref
}

// referenceEnv is the reference's whole environment: it is configured only by environment
// variables (src/settings/settings.go), so none of ours (HOST, PORT, ...) may leak in. Anything not
// set here is its default.
func referenceEnv(redisURL, runtimeRoot string, ports []string) []string {
	return []string{
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + ports[0],
		"HOST=127.0.0.1", "PORT=" + ports[1],
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + ports[2],
		// Its redis client (radix) takes a redis:// URL, with a password and database in it.
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redisURL,
		"RUNTIME_ROOT=" + runtimeRoot, "RUNTIME_SUBDIRECTORY=ratelimit",
		// It still keeps its stats, but sends them nowhere: our limiter's metrics cost nothing until
		// scraped either. Its default sink is a statsd we do not run, and with USE_STATSD=false alone
		// it logs every response-time sample to stderr as a JSON line, a write per request that
		// would count against it.
		"DISABLE_STATS=true",
		// Its own default (WARN) too; said here because debug logging would cost per request.
		"LOG_LEVEL=warn",
	}
}

// freePorts returns n loopback ports free a moment ago, all distinct (held open together).
func freePorts(b *testing.B, n int) []string {
	b.Helper()
	var ports []string
	for range n {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer lis.Close()
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		ports = append(ports, port)
	}
	return ports
}

// waitReady waits up to 20s for the reference to answer a two-descriptor request OK with the
// configured limit on both: an answer without the limit would mean the config did not match and
// the descriptors cost it no Redis call, and an error (UNKNOWN) that it has no config yet or its
// Redis call failed.
func (ref *referenceProcess) waitReady(b *testing.B, exited <-chan error) {
	b.Helper()
	conn, err := grpc.NewClient(ref.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	client := rlsv3.NewRateLimitServiceClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			b.Fatalf("the reference exited before answering: %v\n%s", err, ref.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := client.ShouldRateLimit(ctx, benchRequest(ref.tenantID, 2))
		cancel()
		if last = err; err == nil {
			if last = checkReferenceAnswer(resp); last == nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("the reference at %s did not answer OK within 20s: %v\n%s", ref.addr, last, ref.logTail())
}

func checkReferenceAnswer(resp *rlsv3.RateLimitResponse) error {
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		return fmt.Errorf("overall code %v", resp.GetOverallCode())
	}
	if len(resp.GetStatuses()) != 2 {
		return fmt.Errorf("%d statuses, want 2", len(resp.GetStatuses()))
	}
	for i, st := range resp.GetStatuses() {
		if st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetCurrentLimit().GetRequestsPerUnit() != 1_000_000_000 {
			return fmt.Errorf("descriptor %d: code %v, limit %v (config not applied?)", i, st.GetCode(), st.GetCurrentLimit())
		}
	}
	return nil
}

// cpu is the reference's user+system CPU time so far, all threads: utime and stime, fields 14 and
// 15 of /proc/<pid>/stat, in clock ticks of USER_HZ, which the kernel fixes at 100 a second for
// this interface whatever its internal HZ. At 10ms a tick, a run of 20000 decisions at tens of
// microseconds each is a few hundred ticks: well under 1% rounding.
func (ref *referenceProcess) cpu(b *testing.B) time.Duration {
	const tick = time.Second / 100
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(ref.pid) + "/stat")
	if err != nil {
		b.Fatalf("the reference's CPU time: %v", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces and parentheses: count
	// from after the last ')'.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])) // f[0] is field 3
	if len(f) < 13 {
		b.Fatalf("the reference's CPU time: short /proc/%d/stat: %q", ref.pid, stat)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("the reference's CPU time: bad /proc/%d/stat: %q", ref.pid, stat)
	}
	return time.Duration(utime+stime) * tick
}

// logTail is the end of the reference's output, for failure messages.
func (ref *referenceProcess) logTail() string {
	out, err := os.ReadFile(ref.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	return string(out)
}
