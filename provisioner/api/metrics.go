package api

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests *prometheus.HistogramVec
	denied   *prometheus.CounterVec
}

func newMetrics() metrics {
	return metrics{
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tenantgate", Subsystem: "provisioner_api", Name: "request_duration_seconds",
			Help:    "Provisioner API calls by call and status class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"call", "code"}),
		denied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "provisioner_api", Name: "denied_total",
			Help: "Provisioner API calls refused before reaching a handler, by reason (missing, invalid, scope).",
		}, []string{"reason"}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.denied} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
