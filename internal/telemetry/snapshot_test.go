package telemetry

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// TestSnapshotMetrics_LagOfChangesNotOfTheFirstLoad: the first load (every tenant, written long
// ago) records no lag; each later change records its delay from the write, and the gauges follow
// the snapshot's size and revision.
func TestSnapshotMetrics_LagOfChangesNotOfTheFirstLoad(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reg := registry.NewMemory()
	acme, err := reg.Create(ctx, tenant.Tenant{ID: tenant.NewID(), Slug: "acme", Name: "Acme", Plan: "free", Model: tenant.Pool, Status: tenant.Active})
	if err != nil {
		t.Fatal(err)
	}
	store := snapshot.NewStore(reg, snapshot.WithLogger(slog.New(slog.DiscardHandler)))
	metrics := prometheus.NewRegistry()
	// The process applies each change 250ms after its write, as far as the clocks tell.
	now := func() time.Time { return time.Now().Add(250 * time.Millisecond) }
	listener, err := SnapshotMetrics(store, metrics, now)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan struct{}, 10)
	store.Subscribe(listener)
	store.Subscribe(func(*snapshot.Snapshot, []tenant.Tenant) { applied <- struct{}{} })
	done := make(chan error, 1)
	go func() { done <- store.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	<-applied

	lagCount := func() uint64 {
		fams, err := metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() == "tenantgate_registry_change_feed_lag_seconds" {
				return f.GetMetric()[0].GetHistogram().GetSampleCount()
			}
		}
		t.Fatal("no lag histogram")
		return 0
	}
	if n := lagCount(); n != 0 {
		t.Fatalf("the first load recorded %d lags", n)
	}

	acme.Status = tenant.Suspended
	if _, err := reg.Update(ctx, acme); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Create(ctx, tenant.Tenant{ID: tenant.NewID(), Slug: "globex", Name: "Globex", Plan: "free", Model: tenant.Pool, Status: tenant.Active}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for store.Load().Len() != 2 || lagCount() != 2 {
		select {
		case <-applied:
		case <-deadline:
			t.Fatalf("snapshot %d tenants, %d lags recorded; want 2 and 2", store.Load().Len(), lagCount())
		}
	}
	if got, err := testutil.GatherAndCount(metrics, "tenantgate_registry_snapshot_tenants"); err != nil || got != 1 {
		t.Fatalf("snapshot tenants series: %d, %v", got, err)
	}
	fams, _ := metrics.Gather()
	for _, f := range fams {
		v := f.GetMetric()[0]
		switch f.GetName() {
		case "tenantgate_registry_snapshot_tenants":
			if v.GetGauge().GetValue() != 2 {
				t.Errorf("snapshot tenants = %v, want 2", v.GetGauge().GetValue())
			}
		case "tenantgate_registry_snapshot_revision":
			if v.GetGauge().GetValue() != float64(store.Load().Revision()) || store.Load().Revision() < 3 {
				t.Errorf("snapshot revision = %v, store at %d", v.GetGauge().GetValue(), store.Load().Revision())
			}
		case "tenantgate_registry_change_feed_lag_seconds":
			if sum := v.GetHistogram().GetSampleSum(); sum < 0.5 || sum > 5 {
				t.Errorf("lag sum of two changes = %vs, want about 2 x 0.25s", sum)
			}
		}
	}
}
