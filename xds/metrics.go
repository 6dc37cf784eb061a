package xds

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	nacks     *prometheus.CounterVec
	streams   *prometheus.GaugeVec
	rejected  prometheus.Counter
	pushes    prometheus.Histogram
	resources *prometheus.GaugeVec
}

// newMetrics makes the server's metrics and registers them with r (none when r is nil).
func newMetrics(r prometheus.Registerer) *metrics {
	m := &metrics{
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tenantgate_xds_nacks_total", Help: "Configs Envoys rejected, by resource type.",
		}, []string{"type"}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantgate_xds_streams", Help: "Open ADS streams, by protocol (sotw, delta).",
		}, []string{"protocol"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tenantgate_xds_tenant_changes_rejected_total",
			Help: "Tenant changes not published because a reference would not resolve.",
		}),
		pushes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tenantgate_xds_publish_seconds",
			Help:    "Time to build and publish one batch of tenant changes.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tenantgate_xds_resources", Help: "Resources served, by type.",
		}, []string{"type"}),
	}
	if r != nil {
		r.MustRegister(m.nacks, m.streams, m.rejected, m.pushes, m.resources)
	}
	return m
}

func (m *metrics) observePublish(took time.Duration, c *caches) {
	m.pushes.Observe(took.Seconds())
	for typ, tc := range c.byType {
		m.resources.WithLabelValues(shortType(typ)).Set(float64(tc.len()))
	}
}
