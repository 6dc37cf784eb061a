package snapshot_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

const benchTenants = 100_000

// benchTenantList makes n tenants shaped like a Postgres load: every string its own allocation except
// the model, status and plan, which the registry shares between tenants; a quarter with an upstream
// of their own, all with provisioned resources.
func benchTenantList(n int) []tenant.Tenant {
	plans := []string{"free", "starter", "professional", "enterprise"}
	now := time.Now().UTC()
	out := make([]tenant.Tenant, n)
	for i := range out {
		slug := fmt.Sprintf("tenant-%06d", i)
		t := tenant.Tenant{
			ID:        tenant.NewID(),
			Slug:      slug,
			Name:      fmt.Sprintf("Tenant %06d Inc.", i),
			Plan:      plans[i%len(plans)],
			Model:     tenant.Models[i%len(tenant.Models)],
			Status:    tenant.Active,
			Resources: tenant.Resources{Schema: "tenant_" + slug[7:], Domain: slug + ".example.com"},
			Revision:  int64(i + 1),
			CreatedAt: now,
			UpdatedAt: now,
		}
		if t.Model == tenant.Silo {
			t.Upstream = tenant.Upstream{
				Cluster:   strings.Clone(slug),
				Endpoints: []tenant.Endpoint{{Host: slug + ".svc.cluster.local", Port: 8443}},
			}
		}
		out[i] = t
	}
	return out
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkSnapshot_Build100k builds a snapshot of 100,000 tenants (ns/op) and reports the memory it
// holds per tenant (goal: under 1 KiB): "B/tenant" is everything, the tenants included;
// "B/tenant-data" is the tenants alone, measured in the same run as the baseline; "B/tenant-index" is
// what the snapshot's two indexes add to it.
func BenchmarkSnapshot_Build100k(b *testing.B) {
	before := heapAlloc()
	tenants := benchTenantList(benchTenants)
	data := heapAlloc()
	snap := snapshot.New(tenants, benchTenants)
	all := heapAlloc()
	runtime.KeepAlive(snap)
	if snap.Len() != benchTenants {
		b.Fatalf("snapshot holds %d tenants, want %d", snap.Len(), benchTenants)
	}
	perTenant := func(bytes uint64) float64 { return float64(bytes) / benchTenants }

	for b.Loop() {
		snapshot.New(tenants, benchTenants)
	}
	b.ReportMetric(perTenant(all-before), "B/tenant")
	b.ReportMetric(perTenant(data-before), "B/tenant-data")
	b.ReportMetric(perTenant(all-data), "B/tenant-index")
}

// BenchmarkSnapshot_Lookup100k measures the request path's lookups in a snapshot of 100,000 tenants,
// each against the baseline of a plain Go map lookup of the same keys timed in the same run ("x-map").
func BenchmarkSnapshot_Lookup100k(b *testing.B) {
	tenants := benchTenantList(benchTenants)
	snap := snapshot.New(tenants, benchTenants)
	plain := make(map[string]*tenant.Tenant, len(tenants))
	ids := make([]string, len(tenants))
	slugs := make([]string, len(tenants))
	for i := range tenants {
		plain[tenants[i].ID] = &tenants[i]
		ids[i], slugs[i] = tenants[i].ID, tenants[i].Slug
	}
	// Look keys up in random order, as requests would, not in the order they were inserted.
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	rng.Shuffle(len(slugs), func(i, j int) { slugs[i], slugs[j] = slugs[j], slugs[i] })

	store, stop := runStore(b, tenants)
	defer stop()

	tests := []struct {
		name   string
		keys   []string
		lookup func(string) (*tenant.Tenant, bool)
	}{
		{"ByID", ids, snap.ByID},
		{"BySlug", slugs, snap.BySlug},
		// The hot path as the parts call it: load the current snapshot, then look up.
		{"Store.Load.ByID", ids, func(id string) (*tenant.Tenant, bool) { return store.Load().ByID(id) }},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, ok := tt.lookup(tt.keys[i%len(tt.keys)]); !ok {
					b.Fatal("tenant not found")
				}
				i++
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			b.ReportMetric(perOp/plainLookupNs(plain, ids, b.N), "x-map")
		})
	}
	b.Run("Store.Load.ByID-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(ids))
			for pb.Next() {
				if _, ok := store.Load().ByID(ids[i%len(ids)]); !ok {
					b.Error("tenant not found")
					return
				}
				i++
			}
		})
	})
}

// plainLookupNs times n lookups of keys in a plain map, the baseline.
func plainLookupNs(m map[string]*tenant.Tenant, keys []string, n int) float64 {
	n = max(n, 100_000)
	found := 0
	start := time.Now()
	for i := range n {
		if _, ok := m[keys[i%len(keys)]]; ok {
			found++
		}
	}
	elapsed := time.Since(start)
	if found != n {
		panic("baseline lookup missed")
	}
	return float64(elapsed.Nanoseconds()) / float64(n)
}

// runStore runs a Store fed with tenants until stop is called, and returns once it is ready.
func runStore(b *testing.B, tenants []tenant.Tenant) (*snapshot.Store, func()) {
	b.Helper()
	store := snapshot.NewStore(staticSource(tenants), snapshot.WithLogger(slog.New(slog.DiscardHandler)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	select {
	case <-store.Ready():
	case err := <-done:
		cancel()
		b.Fatalf("store stopped before it was ready: %v", err)
	}
	return store, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("store: %v", err)
		}
	}
}

// staticSource is a registry that never changes.
type staticSource []tenant.Tenant

func (s staticSource) All(context.Context) ([]tenant.Tenant, int64, error) {
	return s, int64(len(s)), nil
}

func (s staticSource) Watch(ctx context.Context, _ int64) (<-chan registry.Change, error) {
	ch := make(chan registry.Change)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}
