package saga

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	finished *prometheus.CounterVec
	steps    *prometheus.HistogramVec
}

func newMetrics() metrics {
	return metrics{
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "provisioner", Name: "sagas_finished_total",
			Help: "Sagas that reached a final state, by kind and state (done, failed).",
		}, []string{"kind", "state"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "tenantgate", Subsystem: "provisioner", Name: "step_duration_seconds",
			Help:    "Time of one saga step action, by step, action (do, undo) and result (ok, error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"step", "action", "result"}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.finished, m.steps} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
