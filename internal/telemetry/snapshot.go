package telemetry

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// SnapshotMetrics registers the gauges of the process's tenant snapshot (tenants held, revision,
// last change) and returns the snapshot.Listener that records the change-feed lag: how long after
// a tenant's registry write (its updated_at) this process swapped in a snapshot holding it. The
// lag includes any clock difference between Postgres and this host.
func SnapshotMetrics(store *snapshot.Store, r prometheus.Registerer, now func() time.Time) (snapshot.Listener, error) {
	var lastChange atomic.Int64 // unix nanos
	var loaded atomic.Bool
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "tenantgate_registry_change_feed_lag_seconds",
		Help:    "Time from a tenant's registry write to this process's snapshot holding it.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	collectors := []prometheus.Collector{
		lag,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tenantgate_registry_snapshot_tenants",
			Help: "Tenants in this process's registry snapshot.",
		}, func() float64 { return float64(store.Load().Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tenantgate_registry_snapshot_revision",
			Help: "Registry revision of this process's snapshot (compare across replicas).",
		}, func() float64 { return float64(store.Load().Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tenantgate_registry_snapshot_last_change_timestamp_seconds",
			Help: "Unix time this process last applied a change from the registry (its first load counts).",
		}, func() float64 { return float64(lastChange.Load()) / 1e9 }),
	}
	for _, c := range collectors {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("snapshot metrics: %w", err)
		}
	}
	return func(_ *snapshot.Snapshot, changed []tenant.Tenant) {
		t := now()
		lastChange.Store(t.UnixNano())
		if !loaded.Swap(true) {
			return // the first load holds every tenant, changed long ago
		}
		for i := range changed {
			if at := changed[i].UpdatedAt; !at.IsZero() {
				lag.Observe(max(t.Sub(at), 0).Seconds())
			}
		}
	}, nil
}
