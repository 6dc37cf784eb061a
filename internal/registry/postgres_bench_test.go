package registry_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

const benchTenants = 100_000

// BenchmarkPostgres_All100k measures the start-up load: every one of 100,000 tenants read with All
// (goal: under 1 s), the CPU time this process spends per load ("cpu-ms/load", garbage collection
// included), and the heap the loaded tenants hold ("B/tenant"). The baseline is the same query on a plain connection with every row read off the
// wire but nothing decoded, measured in the same run: "x-raw" is what decoding into tenants costs on
// top of the query and the transfer.
func BenchmarkPostgres_All100k(b *testing.B) {
	pg, url := newPostgres(b)
	ctx := context.Background()
	seedByCopy(b, url, benchTenants)
	raw := rawReadTime(b, url)

	cpuBefore := processCPU(b)
	for b.Loop() {
		tenants, rev, err := pg.All(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(tenants) != benchTenants || rev != benchTenants {
			b.Fatalf("All = %d tenants at revision %d, want %d at %d", len(tenants), rev, benchTenants, benchTenants)
		}
	}
	cpuPerLoad := (processCPU(b) - cpuBefore) / time.Duration(b.N)
	perLoad := b.Elapsed() / time.Duration(b.N)
	// Wall time on a shared machine waits for the CPU; this process's CPU time per load does not.
	b.ReportMetric(float64(cpuPerLoad.Microseconds())/1000, "cpu-ms/load")
	b.ReportMetric(float64(perLoad.Microseconds())/1000, "ms/load")
	b.ReportMetric(loadedBytesPerTenant(b, pg), "B/tenant")
	b.ReportMetric(float64(raw.Microseconds())/1000, "ms/raw-read")
	b.ReportMetric(float64(perLoad)/float64(raw), "x-raw")
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadedBytesPerTenant is the heap that one load's tenants hold, per tenant.
func loadedBytesPerTenant(b *testing.B, pg *registry.Postgres) float64 {
	before := heapAlloc()
	tenants, _, err := pg.All(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	after := heapAlloc()
	runtime.KeepAlive(tenants)
	return float64(after-before) / float64(len(tenants))
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// seedByCopy inserts n tenants with COPY: a quarter silo or bridge with their own upstream, all with
// provisioned resources, statuses mixed, revisions 1..n.
func seedByCopy(b *testing.B, url string, n int) {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	now := time.Now().UTC()
	plans := []string{"free", "starter", "professional", "enterprise"}
	statuses := []tenant.Status{tenant.Active, tenant.Active, tenant.Active, tenant.Suspended, tenant.Deleted}
	rows := pgx.CopyFromFunc(func() func() ([]any, error) {
		i := 0
		return func() ([]any, error) {
			if i == n {
				return nil, nil
			}
			i++
			slug := fmt.Sprintf("tenant-%06d", i)
			model := tenant.Models[i%len(tenant.Models)]
			var up tenant.Upstream
			if model == tenant.Silo || model == tenant.Bridge {
				up = tenant.Upstream{Cluster: slug, Endpoints: []tenant.Endpoint{{Host: slug + ".svc.cluster.local", Port: 8443}}}
			}
			res := tenant.Resources{Schema: "tenant_" + slug[7:], Domain: slug + ".example.com"}
			return []any{
				uuid.New(), slug, fmt.Sprintf("Tenant %06d Inc.", i), plans[i%len(plans)], string(model),
				string(statuses[i%len(statuses)]), up, res, "", int64(i), now, now,
			}, nil
		}
	}())
	cols := []string{"id", "slug", "name", "plan", "model", "status", "upstream", "resources", "last_error", "revision", "created_at", "updated_at"}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"tenantgate", "tenants"}, cols, rows)
	if err != nil || copied != int64(n) {
		b.Fatalf("copy %d tenants: %d copied, %v", n, copied, err)
	}
	if _, err := conn.Exec(ctx, `SELECT setval('tenantgate.revision', $1)`, n); err != nil {
		b.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `VACUUM ANALYZE tenantgate.tenants`); err != nil {
		b.Fatal(err)
	}
}

// rawReadTime is the median of a few reads of every tenant row with nothing decoded.
func rawReadTime(b *testing.B, url string) time.Duration {
	b.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var times []time.Duration
	for range 5 {
		start := time.Now()
		rows, err := conn.Query(ctx, `SELECT `+registry.TenantColumns+` FROM tenantgate.tenants`)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			_ = rows.RawValues()
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil || n != benchTenants {
			b.Fatalf("raw read: %d rows, %v", n, err)
		}
		times = append(times, time.Since(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return times[len(times)/2]
}
