package registry

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// postgresMetrics are the Postgres registry's metrics. Labels are bounded: an operation and a result.
type postgresMetrics struct {
	writes          *prometheus.CounterVec
	watchReconnects prometheus.Counter
	watchChanges    prometheus.Counter
}

func newPostgresMetrics(r prometheus.Registerer) (*postgresMetrics, error) {
	m := &postgresMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "registry", Name: "writes_total",
			Help: "Tenant registry writes by operation (create, update) and result (ok, conflict, exists, not_found, invalid, error).",
		}, []string{"op", "result"}),
		watchReconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "registry", Name: "watch_reconnects_total",
			Help: "Times a change-feed watcher lost its connection and reconnected.",
		}),
		watchChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "tenantgate", Subsystem: "registry", Name: "watch_changes_total",
			Help: "Tenant changes delivered by the change feed.",
		}),
	}
	if r == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.writes, m.watchReconnects, m.watchChanges} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("register registry metrics: %w", err)
		}
	}
	return m, nil
}

func (m *postgresMetrics) write(op string, err error) {
	m.writes.WithLabelValues(op, writeResult(err)).Inc()
}

// writeResult names the outcome of a write for the result label.
func writeResult(err error) string {
	var transition *tenant.TransitionError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrExists):
		return "exists"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, tenant.ErrInvalid), errors.As(err, &transition):
		return "invalid"
	}
	return "error"
}
