package provisioner_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

// BenchmarkProvision reports the time from POST to active for pool, namespace and bridge tenants,
// Kubernetes off, over 50 tenants each: p50 and p99, and the ratio of each model's p50 to pool's
// (the baseline, measured in the same run). Goals: pool under 50 ms, bridge under 1.5 s. p99 over 50
// samples is by nearest rank, which for 50 samples is the slowest one.
//
//	go test ./provisioner -run '^$' -bench BenchmarkProvision -benchtime 1x
func BenchmarkProvision(b *testing.B) {
	const tenants = 50
	e := newEnv(b)
	p := e.startWith(b, provOpts{workers: 4}, func(d *steps.Deps) { d.Kube = nil })
	ctx := context.Background()
	var poolP50 time.Duration
	for _, model := range []tenant.Model{tenant.Pool, tenant.Namespace, tenant.Bridge} {
		b.Run(string(model), func(b *testing.B) {
			// One tenant first, unmeasured: the first pool tenant of a database also migrates the
			// shared pool schema, a one-time cost of an installation rather than of a tenant.
			warm := fmt.Sprintf("warm-%s-%d", model, time.Now().UnixNano()%100000)
			v, _, err := p.Create(ctx, provisioner.CreateRequest{Name: warm, Slug: warm, Plan: "free", Model: model, AdminEmail: "o@" + warm + ".example"}, "")
			if err != nil {
				b.Fatal(err)
			}
			waitActiveFast(b, p.Provisioner, v.Tenant.ID)
			var took []time.Duration
			for b.Loop() {
				took = took[:0]
				for i := range tenants {
					slug := fmt.Sprintf("bench-%s-%d-%d", model, len(took), i) + "-" + fmt.Sprint(time.Now().UnixNano()%100000)
					start := time.Now()
					v, _, err := p.Create(ctx, provisioner.CreateRequest{Name: slug, Slug: slug, Plan: "free", Model: model, AdminEmail: "o@" + slug + ".example"}, "")
					if err != nil {
						b.Fatal(err)
					}
					if v = waitActiveFast(b, p.Provisioner, v.Tenant.ID); v.Tenant.Status != tenant.Active {
						b.Fatalf("%s ended %s: %s", slug, v.Tenant.Status, v.Tenant.LastError)
					}
					took = append(took, time.Since(start))
				}
			}
			slices.Sort(took)
			p50, p99 := took[len(took)/2], took[len(took)*99/100]
			if model == tenant.Pool {
				poolP50 = p50
			}
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
			if poolP50 > 0 {
				b.ReportMetric(float64(p50)/float64(poolP50), "p50-x-pool")
			}
		})
	}
}

// waitActiveFast polls the tenant tightly until its creation saga ends.
func waitActiveFast(b *testing.B, p *provisioner.Provisioner, id string) provisioner.View {
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := p.Get(context.Background(), id)
		if err != nil {
			b.Fatal(err)
		}
		if v.Tenant.Status == tenant.Active || v.Tenant.Status == tenant.Failed {
			return v
		}
		if time.Now().After(deadline) {
			b.Fatalf("tenant %s still %s", id, v.Tenant.Status)
		}
		time.Sleep(time.Millisecond)
	}
}
