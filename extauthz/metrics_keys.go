package extauthz

import (
	"github.com/prometheus/client_golang/prometheus"
)

// keyAgeCollector reports, per issuer, how long ago its keys were last confirmed current (a
// successful fetch, changed or not) next to the refresh interval, so that an alert can tell keys
// gone stale from keys merely unchanged. It reads at scrape time; requests pay nothing.
type keyAgeCollector struct {
	v        *Verifier
	age      *prometheus.Desc
	interval *prometheus.Desc
}

// KeyAgeCollector returns the collector of tenantgate_authz_jwks_age_seconds and
// tenantgate_authz_jwks_refresh_interval_seconds, by issuer. Issuers with static keys (an HMAC
// secret) have no age; issuers whose keys never loaded report none until they do.
func (v *Verifier) KeyAgeCollector() prometheus.Collector {
	return &keyAgeCollector{
		v: v,
		age: prometheus.NewDesc("tenantgate_authz_jwks_age_seconds",
			"Seconds since the issuer's keys were last fetched successfully (confirmed current), by issuer.",
			[]string{"issuer"}, nil),
		interval: prometheus.NewDesc("tenantgate_authz_jwks_refresh_interval_seconds",
			"The configured key refresh interval, by issuer (compare with tenantgate_authz_jwks_age_seconds).",
			[]string{"issuer"}, nil),
	}
}

func (c *keyAgeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.age
	ch <- c.interval
}

func (c *keyAgeCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.v.now().UnixNano()
	for _, vi := range c.v.order {
		k := vi.keys
		if k.source == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, vi.cfg.RefreshInterval.D().Seconds(), vi.cfg.Issuer)
		if at := k.fetchedAt.Load(); at != 0 {
			ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, float64(now-at)/1e9, vi.cfg.Issuer)
		}
	}
}
