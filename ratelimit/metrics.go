package ratelimit

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the limiter's Prometheus metrics. Labels are bounded: no tenant ids.
type metrics struct {
	decisions     *prometheus.CounterVec // code, source
	ignored       *prometheus.CounterVec // reason
	storeFailures *prometheus.CounterVec // failure_mode
	storeSeconds  prometheus.Histogram
	breakerOpen   prometheus.Gauge

	okStore, overStore, overCache, okFailOpen, overFailClosed, overRefused prometheus.Counter
	ignoredDomain, ignoredDescriptor                                       prometheus.Counter
	failOpen, failClosed                                                   prometheus.Counter
}

// Reasons a request or descriptor is not limited here, the values of the ignored metric's label.
const (
	ignoredOtherDomain = "other_domain"
	ignoredNotOurs     = "descriptor_not_ours"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "ratelimit", Name: "decisions_total",
			Help: "Rate-limit decisions by code (ok, over_limit) and source (store, local_cache, failure_mode, refused).",
		}, []string{"code", "source"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "ratelimit", Name: "ignored_total",
			Help: "Requests of another domain and descriptors that are not Tenantgate's, allowed without counting.",
		}, []string{"reason"}),
		storeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "ratelimit", Name: "store_failures_total",
			Help: "Decisions made by a plan's failure mode because the counter store failed or was skipped.",
		}, []string{"failure_mode"}),
		storeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "tenantgate", Subsystem: "ratelimit", Name: "store_seconds",
			Help:    "Latency of one counter-store decision (one Redis round trip).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}),
		breakerOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "tenantgate", Subsystem: "ratelimit", Name: "store_breaker_open",
			Help: "1 while the counter store is being skipped after failures.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.decisions, m.ignored, m.storeFailures, m.storeSeconds, m.breakerOpen} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m.okStore = m.decisions.WithLabelValues("ok", "store")
	m.overStore = m.decisions.WithLabelValues("over_limit", "store")
	m.overCache = m.decisions.WithLabelValues("over_limit", "local_cache")
	m.okFailOpen = m.decisions.WithLabelValues("ok", "failure_mode")
	m.overFailClosed = m.decisions.WithLabelValues("over_limit", "failure_mode")
	m.overRefused = m.decisions.WithLabelValues("over_limit", "refused")
	m.ignoredDomain = m.ignored.WithLabelValues(ignoredOtherDomain)
	m.ignoredDescriptor = m.ignored.WithLabelValues(ignoredNotOurs)
	m.failOpen = m.storeFailures.WithLabelValues("open")
	m.failClosed = m.storeFailures.WithLabelValues("closed")
	return m, nil
}
