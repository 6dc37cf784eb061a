package xds

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// The load benchmarks run the simulated Envoys in a child process (this test binary, running
// TestLoadClients), so the control plane's CPU and heap are measured alone. They talk over the
// child's stdin and stdout:
//
//	parent: "await create <slug>" | "await plan <slug> <plan>" | "await gone <slug>"
//	child:  "synced <bytes>" once every client holds the seeded tenants, then for each await
//	        "done <unix nanos when the last client had it> <bytes received by all clients so far>"
const (
	envLoadAddr    = "TENANTGATE_XDS_LOAD_ADDR"
	envLoadClients = "TENANTGATE_XDS_LOAD_CLIENTS"
	envLoadTenants = "TENANTGATE_XDS_LOAD_TENANTS"
	envLoadDelta   = "TENANTGATE_XDS_LOAD_DELTA"
)

func TestLoadClients(t *testing.T) {
	addr := os.Getenv(envLoadAddr)
	if addr == "" {
		t.Skip("child process of the xds load benchmarks")
	}
	n, _ := strconv.Atoi(os.Getenv(envLoadClients))
	tenants, _ := strconv.Atoi(os.Getenv(envLoadTenants))
	cs := make([]*adsClient, n)
	for i := range cs {
		cs[i] = dialADS(t, addr, fmt.Sprintf("envoy-%03d", i), os.Getenv(envLoadDelta) != "false", lean())
	}
	for _, c := range cs {
		c.waitFor(t, 10*time.Minute, "seeded tenants", func(c *adsClient) bool {
			return len(c.res[resource.RouteType]) >= tenants && len(c.res[resource.ScopedRouteType]) >= tenants
		})
	}
	fmt.Printf("synced %d\n", totalBytes(cs))
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) < 3 || f[0] != "await" {
			t.Fatalf("bad command %q", in.Text())
		}
		scope := envoybuild.TenantResourceName(f[2])
		var cond func(c *adsClient) bool
		keys := []string{shortType(resource.RouteType) + "/" + scope}
		switch f[1] {
		case "create":
			cond = func(c *adsClient) bool { return c.servable(scope) }
			keys = append(keys, shortType(resource.ScopedRouteType)+"/"+scope)
		case "plan":
			cond = func(c *adsClient) bool { return c.planOf(scope) == f[3] }
		case "gone":
			cond = func(c *adsClient) bool {
				return !c.has(resource.ScopedRouteType, scope) && !c.has(resource.RouteType, scope)
			}
			keys = nil
		}
		var last time.Time
		for _, c := range cs {
			c.waitFor(t, time.Minute, f[1]+" "+f[2], cond)
			c.mu.Lock()
			for _, k := range keys {
				if at := c.seenAt[k]; at.After(last) {
					last = at
				}
			}
			if keys == nil {
				last = time.Now() // removals: when the last client was seen without it
			}
			c.mu.Unlock()
		}
		fmt.Printf("done %d %d\n", last.UnixNano(), totalBytes(cs))
	}
}

func totalBytes(cs []*adsClient) int64 {
	var sum int64
	for _, c := range cs {
		c.mu.Lock()
		sum += c.bytes
		c.mu.Unlock()
	}
	return sum
}

// loadChild is the running child process.
type loadChild struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startLoadChild(tb testing.TB, addr string, clients, tenants int, delta bool) *loadChild {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), envLoadAddr+"="+addr, envLoadClients+"="+strconv.Itoa(clients),
		envLoadTenants+"="+strconv.Itoa(tenants), envLoadDelta+"="+strconv.FormatBool(delta))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	lc := &loadChild{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	tb.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return lc
}

// line reads the next protocol line, skipping the test framework's own output.
func (lc *loadChild) line(tb testing.TB, prefix string) []string {
	tb.Helper()
	for lc.out.Scan() {
		if f := strings.Fields(lc.out.Text()); len(f) > 0 && f[0] == prefix {
			return f
		}
		tb.Logf("load child: %s", lc.out.Text())
	}
	tb.Fatalf("load child ended before %q: %v", prefix, lc.out.Err())
	return nil
}

func seedTenants(tb testing.TB, reg *registry.Memory, n int) {
	tb.Helper()
	ctx := context.Background()
	for i := range n {
		tn := newTenant(fmt.Sprintf("t%06d", i), tenant.Active)
		if i%10 == 0 { // every tenth has its own upstream: a cluster and endpoints of its own
			tn.Model = tenant.Silo
			tn.Upstream.Endpoints = []tenant.Endpoint{{Host: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Port: 8080}}
		}
		if _, err := reg.Create(ctx, tn); err != nil {
			tb.Fatal(err)
		}
	}
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// BenchmarkPush_10kTenants_50DeltaClients: 10,000 tenants, 50 delta Envoys; each iteration is one
// registry commit (a created tenant, a plan change or a suspension in turn), timed until the last
// Envoy holds it. Run with a fixed count: go test ./xds -run '^$' -bench Push -benchtime 150x
func BenchmarkPush_10kTenants_50DeltaClients(b *testing.B) { benchmarkPush(b, 10_000, 50, true) }

// BenchmarkPush_10kTenants_10SotwClients is the same over state-of-the-world, where every created or
// removed tenant re-sends the full set of scopes (Envoy's full-state rule for SRDS).
func BenchmarkPush_10kTenants_10SotwClients(b *testing.B) { benchmarkPush(b, 10_000, 10, false) }

func benchmarkPush(b *testing.B, tenants, clients int, delta bool) {
	reg := registry.NewMemory()
	seedTenants(b, reg, tenants)
	cfg := testConfig()
	cfg.XDS.Debounce = config.Default().XDS.Debounce
	cfg.XDS.MaxDelay = config.Default().XDS.MaxDelay
	h := startControlPlane(b, reg, cfg)
	<-h.srv.Ready()
	heapServer := heapInuse()
	child := startLoadChild(b, h.addr, clients, tenants, delta)
	start := time.Now()
	synced := child.line(b, "synced")
	syncTook := time.Since(start)
	heapConnected := heapInuse()
	bytesBefore, _ := strconv.ParseInt(synced[1], 10, 64)

	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	var created []tenant.Tenant
	var lastBytes int64
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var cmd string
		t0 := time.Now()
		switch {
		case i%3 == 0 || len(created) == 0:
			tn := newTenant(fmt.Sprintf("new%06d", i), tenant.Active)
			if i%2 == 0 {
				tn.Upstream.Endpoints = []tenant.Endpoint{{Host: "10.200.0.1", Port: 8080}}
			}
			created = append(created, create(b, reg, tn))
			cmd = "await create " + tn.Slug
		case i%3 == 1:
			tn, _ := reg.Get(ctx, created[len(created)-1].ID)
			tn.Plan = []string{"starter", "enterprise"}[i%2]
			t0 = time.Now()
			if _, err := reg.Update(ctx, tn); err != nil {
				b.Fatal(err)
			}
			cmd = "await plan " + tn.Slug + " " + tn.Plan
		default:
			tn := created[len(created)-1]
			created = created[:len(created)-1]
			t0 = time.Now()
			setStatus(b, reg, tn, tenant.Suspended)
			cmd = "await gone " + tn.Slug
		}
		fmt.Fprintln(child.in, cmd)
		f := child.line(b, "done")
		at, _ := strconv.ParseInt(f[1], 10, 64)
		lat = append(lat, time.Unix(0, at).Sub(t0))
		lastBytes, _ = strconv.ParseInt(f[2], 10, 64)
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	perClient := float64(lastBytes-bytesBefore) / float64(b.N*clients)
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(percentile(lat, 1)), "max-ms")
	b.ReportMetric(ms(cpu)/float64(b.N), "server-cpu-ms/change")
	b.ReportMetric(perClient, "B/client/change")
	b.ReportMetric(float64(heapConnected-heapServer)/float64(clients)/1024, "heap-KiB/client")
	b.ReportMetric(float64(heapServer)/(1<<20), "server-heap-MiB")
	b.ReportMetric(0, "ns/op")

	// Baseline, measured here: the layout of one RouteConfiguration holding every tenant, where any
	// change re-sends (and re-marshals) the whole of it.
	base := bigRouteConfiguration(h.srv)
	t1 := time.Now()
	raw, err := proto.Marshal(base)
	if err != nil {
		b.Fatal(err)
	}
	baseCPU := time.Since(t1)
	b.ReportMetric(float64(len(raw))/perClient, "bytes-ratio-vs-one-big-RDS")
	b.ReportMetric(float64(baseCPU)/float64(cpu/time.Duration(b.N)), "cpu-ratio-vs-one-big-RDS-marshal")
	b.Logf("initial sync of %d clients with %d tenants: %s; one big RouteConfiguration: %d bytes, marshal %s",
		clients, tenants, syncTook, len(raw), baseCPU)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// bigRouteConfiguration merges every published tenant route configuration into one.
func bigRouteConfiguration(s *Server) *routev3.RouteConfiguration {
	out := &routev3.RouteConfiguration{Name: "all-tenants"}
	dc := s.caches.byType[resource.RouteType].delta
	dc.mu.Lock()
	defer dc.mu.Unlock()
	for _, e := range dc.res {
		var rc routev3.RouteConfiguration
		if err := e.packed.UnmarshalTo(&rc); err != nil {
			panic(err)
		}
		out.VirtualHosts = append(out.VirtualHosts, rc.GetVirtualHosts()...)
	}
	return out
}

// BenchmarkBuildServe_100kTenants builds the configuration of 100,000 tenants and serves it to one
// delta Envoy, reporting the heap (goal: within 1 GiB). Run: go test ./xds -run '^$' -bench 100k -benchtime 1x
func BenchmarkBuildServe_100kTenants(b *testing.B) {
	const tenants = 100_000
	for i := 0; i < b.N; i++ {
		heapStart := heapInuse()
		reg := registry.NewMemory()
		seedTenants(b, reg, tenants)
		heapRegistry := heapInuse()
		start := time.Now()
		h := startControlPlane(b, reg, testConfig())
		<-h.srv.Ready()
		built := time.Since(start)
		heapBuilt := heapInuse()
		child := startLoadChild(b, h.addr, 1, tenants, true)
		child.line(b, "synced")
		served := time.Since(start)
		heapServed := heapInuse()
		if path := os.Getenv("TENANTGATE_XDS_HEAP_PROFILE"); path != "" {
			writeHeapProfile(b, path)
		}
		b.ReportMetric(float64(heapServed-heapStart)/(1<<20), "total-heap-MiB")
		b.ReportMetric(float64(heapRegistry-heapStart)/(1<<20), "memory-registry-heap-MiB")
		b.ReportMetric(float64(heapBuilt-heapRegistry)/(1<<20), "xds-built-heap-MiB")
		b.ReportMetric(float64(heapServed-heapRegistry)/(1<<20), "xds-serving-heap-MiB")
		b.ReportMetric(built.Seconds(), "build-s")
		b.ReportMetric(served.Seconds(), "build+first-sync-s")
		b.ReportMetric(0, "ns/op")
		if heapServed-heapStart > 1<<30 {
			b.Errorf("100,000 tenants took %d MiB of heap, over the 1 GiB goal", (heapServed-heapStart)>>20)
		}
	}
}

func writeHeapProfile(tb testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		tb.Fatal(err)
	}
}
