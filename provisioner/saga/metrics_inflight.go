package saga

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// inFlightCollector reads the sagas still in flight from Postgres at scrape time, so every replica
// reports the same, cluster-wide view: how many sagas sit at which step, and how old the oldest is.
type inFlightCollector struct {
	db      *pgxpool.Pool
	timeout time.Duration
	inFlight,
	oldest,
	oldestByKind,
	up *prometheus.Desc
}

// InFlightCollector returns the collector of tenantgate_provisioner_sagas_in_flight{kind,state,step}
// and tenantgate_provisioner_oldest_saga_age_seconds (0 with none in flight). Labels are bounded:
// kinds, states and the catalog's step names. A scrape costs one indexed query (sagas_due covers
// the in-flight rows), bounded by a 2-second timeout.
func InFlightCollector(db *pgxpool.Pool) prometheus.Collector {
	return &inFlightCollector{
		db:      db,
		timeout: 2 * time.Second,
		inFlight: prometheus.NewDesc("tenantgate_provisioner_sagas_in_flight",
			"Sagas running or compensating, by kind, state and the step they are at (all replicas).",
			[]string{"kind", "state", "step"}, nil),
		oldest: prometheus.NewDesc("tenantgate_provisioner_oldest_saga_age_seconds",
			"Age of the oldest saga in flight (0 when none is).", nil, nil),
		oldestByKind: prometheus.NewDesc("tenantgate_provisioner_oldest_saga_age_by_kind_seconds",
			"Age of the oldest saga in flight, by kind.", []string{"kind"}, nil),
		up: prometheus.NewDesc("tenantgate_provisioner_saga_scrape_ok",
			"1 when the in-flight sagas could be read at this scrape, 0 when Postgres did not answer.", nil, nil),
	}
}

func (c *inFlightCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inFlight
	ch <- c.oldest
	ch <- c.oldestByKind
	ch <- c.up
}

func (c *inFlightCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rows, err := c.db.Query(ctx, `SELECT kind, state, coalesce(steps[step + 1], ''), count(*),
			extract(epoch FROM now() - min(created_at))::float8
		FROM `+Schema+`.sagas WHERE state IN ('running', 'compensating')
		GROUP BY 1, 2, 3`)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	defer rows.Close()
	oldest := 0.0
	byKind := map[string]float64{}
	for rows.Next() {
		var kind, state, step string
		var n int64
		var age float64
		if err := rows.Scan(&kind, &state, &step, &n, &age); err != nil {
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
			return
		}
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(n), kind, state, step)
		oldest = max(oldest, age)
		byKind[kind] = max(byKind[kind], age)
	}
	if rows.Err() != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest)
	for kind, age := range byKind {
		ch <- prometheus.MustNewConstMetric(c.oldestByKind, prometheus.GaugeValue, age, kind)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
}
