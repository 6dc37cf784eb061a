package extauthz

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tenantgate/tenantgate/internal/config"
)

// settableClock is a test clock moved by hand.
type settableClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *settableClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *settableClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// gauge reads one series of the collector by its name and issuer, and whether it is there.
func gauge(t *testing.T, c prometheus.Collector, name, issuer string) (float64, bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "issuer" && l.GetValue() == issuer {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

// TestKeyAge_GrowsWhileFetchesFailAndResetsOnSuccess: the age of an issuer's keys counts from the
// last successful fetch, so failing fetches (which keep the last good keys) let it grow past the
// refresh interval, where the JWKS-stale alert fires, and the next good fetch brings it back to 0.
func TestKeyAge_GrowsWhileFetchesFailAndResetsOnSuccess(t *testing.T) {
	clock := &settableClock{now: time.Now()}
	a := newEdSigner(t, "key-a")
	js := newJWKSServer(t, jwksOf(t, a))
	s := startServer(t, authzConfig(issuerFor(js, mainIss)), allTenants(), js.Client(), WithClock(clock.Now))
	waitReady(t, s)
	c := s.Verifier().KeyAgeCollector()

	if v, ok := gauge(t, c, "tenantgate_authz_jwks_refresh_interval_seconds", mainIss); !ok || v != 3600 {
		t.Fatalf("refresh interval = %v (present %v), want 3600", v, ok)
	}
	if v, ok := gauge(t, c, "tenantgate_authz_jwks_age_seconds", mainIss); !ok || v != 0 {
		t.Fatalf("age right after the load = %v (present %v), want 0", v, ok)
	}

	// Two hours of failing fetches: the keys stay, their age grows past twice the interval.
	js.set([]byte("oops"), http.StatusInternalServerError, 0)
	clock.add(2 * time.Hour)
	errs := s.metrics.refreshes.WithLabelValues(mainIss, "error")
	before := testutil.ToFloat64(errs)
	check(t, s, checkReq("x", bearer(freshToken(t, newEdSigner(t, "key-unknown"), mainIss)), nil))
	eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(errs) > before })
	if v, _ := gauge(t, c, "tenantgate_authz_jwks_age_seconds", mainIss); v != 7200 {
		t.Fatalf("age after failed fetches = %v, want 7200", v)
	}

	// The endpoint is back: the next fetch (asked for by another unknown kid) resets the age.
	js.set(jwksOf(t, a), http.StatusOK, 0)
	clock.add(time.Second)
	check(t, s, checkReq("x", bearer(freshToken(t, newEdSigner(t, "key-unknown-2"), mainIss)), nil))
	eventually(t, 5*time.Second, func() bool {
		v, _ := gauge(t, c, "tenantgate_authz_jwks_age_seconds", mainIss)
		return v == 0
	})
}

// TestKeyAge_StaticKeysHaveNoAge: an issuer with an HMAC secret has nothing to fetch and reports no
// age (so the stale alert never fires for it).
func TestKeyAge_StaticKeysHaveNoAge(t *testing.T) {
	iss := config.Issuer{Issuer: mainIss, Audiences: []string{audience}, HMACSecret: config.Secret("0123456789abcdef0123456789abcdef")}
	s := startServer(t, authzConfig(iss), allTenants(), http.DefaultClient)
	waitReady(t, s)
	if _, ok := gauge(t, s.Verifier().KeyAgeCollector(), "tenantgate_authz_jwks_age_seconds", mainIss); ok {
		t.Error("an HMAC issuer reports a key age")
	}
}
