package xds

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WithConfigVersionMetrics registers tenantgate_xds_config_version (the registry revision of the
// configuration last published to the caches) and tenantgate_xds_last_publish_timestamp_seconds.
// Comparing the version across control-plane replicas, or with tenantgate_registry_snapshot_revision,
// shows one that is behind.
func WithConfigVersionMetrics(r prometheus.Registerer) Option {
	version := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenantgate_xds_config_version",
		Help: "Registry revision of the xDS configuration last published.",
	})
	last := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tenantgate_xds_last_publish_timestamp_seconds",
		Help: "Unix time of the last xDS publish.",
	})
	r.MustRegister(version, last)
	return withPublishHook(func(revision int64) {
		version.Set(float64(revision))
		last.Set(float64(time.Now().UnixNano()) / 1e9)
	})
}
