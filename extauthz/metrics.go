package extauthz

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics of the verifier and the Check service. Labels are bounded: reasons are a fixed set and
// issuers come from the configuration; tenant ids never appear.
type metrics struct {
	checks    [reasonCount]prometheus.Counter
	cacheHit  prometheus.Counter
	cacheMiss prometheus.Counter
	refreshes *prometheus.CounterVec // issuer, result
	keys      *prometheus.GaugeVec   // issuer
}

func newMetrics(r prometheus.Registerer) (*metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantgate_authz_checks_total",
		Help: "ext_authz Check decisions by reason (ok or why the request was denied).",
	}, []string{"reason"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantgate_authz_token_cache_total",
		Help: "Verified-token cache lookups by result (hit or miss).",
	}, []string{"result"})
	refreshes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantgate_authz_jwks_refreshes_total",
		Help: "JWKS loads by issuer and result (ok or error; on error the last good keys stay).",
	}, []string{"issuer", "result"})
	keys := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tenantgate_authz_jwks_keys",
		Help: "Verification keys currently loaded, by issuer.",
	}, []string{"issuer"})
	if r != nil {
		var err error
		if checks, err = register(r, checks); err != nil {
			return nil, err
		}
		if cache, err = register(r, cache); err != nil {
			return nil, err
		}
		if refreshes, err = register(r, refreshes); err != nil {
			return nil, err
		}
		if keys, err = register(r, keys); err != nil {
			return nil, err
		}
	}
	m := &metrics{
		cacheHit:  cache.WithLabelValues("hit"),
		cacheMiss: cache.WithLabelValues("miss"),
		refreshes: refreshes,
		keys:      keys,
	}
	for r := range reasonCount {
		m.checks[r] = checks.WithLabelValues(r.String())
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its name, so that two
// verifiers in one process (ext_authz and the admin API) share their metrics.
func register[C prometheus.Collector](r prometheus.Registerer, c C) (C, error) {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}
