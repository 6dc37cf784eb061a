package extauthz

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/tenantgate/tenantgate/internal/config"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// freshToken is a new token (new jti) for acme, so it is never served from the cache.
func freshToken(t testing.TB, s signer, iss string) string {
	t.Helper()
	return s.sign(t, nil, with(claimsFor(iss, acme.ID), "jti", fmt.Sprint(time.Now().UnixNano())))
}

func TestJWKS_RotatedKeyWorksWithinOneCooldown(t *testing.T) {
	a, b := newEdSigner(t, "key-a"), newEdSigner(t, "key-b")
	js := newJWKSServer(t, jwksOf(t, a))
	iss := issuerFor(js, mainIss)
	iss.UnknownKIDCooldown = config.Duration(2 * time.Second)
	s := startServer(t, authzConfig(iss), allTenants(), js.Client())
	waitReady(t, s)
	assertAllowed(t, check(t, s, checkReq("x", bearer(freshToken(t, a, mainIss)), nil)), acme, "user-1")

	// The IdP rotates: it publishes key-b and signs with it.
	js.set(jwksOf(t, a, b), http.StatusOK, 0)
	rotated := time.Now()
	tok := freshToken(t, b, mainIss)
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusUnauthorized, tok)
	eventually(t, iss.UnknownKIDCooldown.D(), func() bool {
		return check(t, s, checkReq("x", bearer(tok), nil)).GetOkResponse() != nil
	})
	t.Logf("new kid accepted %s after the first use", time.Since(rotated).Round(time.Millisecond))
}

func TestJWKS_RemovedKeyStopsVerifyingAfterRefresh(t *testing.T) {
	a, b := newEdSigner(t, "key-a"), newEdSigner(t, "key-b")
	js := newJWKSServer(t, jwksOf(t, a, b))
	iss := issuerFor(js, mainIss)
	s := startServer(t, authzConfig(iss), allTenants(), js.Client())
	waitReady(t, s)
	tok := freshToken(t, a, mainIss)
	assertAllowed(t, check(t, s, checkReq("x", bearer(tok), nil)), acme, "user-1") // now cached
	assertAllowed(t, check(t, s, checkReq("x", bearer(tok), nil)), acme, "user-1")

	js.set(jwksOf(t, b), http.StatusOK, 0) // key-a revoked
	fetches := js.fetches.Load()
	unknown := freshToken(t, newEdSigner(t, "key-c"), mainIss) // an unknown kid asks for a refresh
	check(t, s, checkReq("x", bearer(unknown), nil))
	eventually(t, 5*time.Second, func() bool {
		return js.fetches.Load() > fetches && s.Ready() == nil && len(s.verifier.order[0].keys.keys().all) == 1
	})

	if n := s.verifier.cache.len(); n != 0 {
		t.Fatalf("cache still holds %d entries of the revoked key", n)
	}
	before := reasonTotal(s, ReasonUnknownKey)
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusUnauthorized, tok)
	if reasonTotal(s, ReasonUnknownKey) != before+1 {
		t.Fatal("the cached verdict of a revoked key was used")
	}
	assertAllowed(t, check(t, s, checkReq("x", bearer(freshToken(t, b, mainIss)), nil)), acme, "user-1")
}

// TestJWKS_UnknownKidFloodFetchesAtMostOncePerCooldown: thousands of random kids while the JWKS
// endpoint is slow cost at most one fetch per cooldown, no Check waits for it, and no goroutine
// is left behind.
func TestJWKS_UnknownKidFloodFetchesAtMostOncePerCooldown(t *testing.T) {
	a := newEdSigner(t, "key-a")
	js := newJWKSServer(t, jwksOf(t, a))
	iss := issuerFor(js, mainIss)
	iss.UnknownKIDCooldown = config.Duration(5 * time.Second)
	iss.FetchTimeout = config.Duration(10 * time.Second)
	s := startServer(t, authzConfig(iss), allTenants(), js.Client())
	waitReady(t, s)
	js.set(jwksOf(t, a), http.StatusOK, 2*time.Second) // every fetch from now on takes 2s

	attacker := newEdSigner(t, "x")
	const workers, perWorker = 16, 100
	tokens := make([][]string, workers)
	for w := range tokens {
		for i := range perWorker {
			attacker.kid = fmt.Sprintf("random-%d-%d", w, i)
			tokens[w] = append(tokens[w], freshToken(t, attacker, mainIss))
		}
	}
	fetchesBefore := js.fetches.Load()
	goroutinesBefore := runtime.NumGoroutine()

	var mu sync.Mutex
	var slowest time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			for _, tok := range tokens[w] {
				t0 := time.Now()
				resp, err := s.Check(context.Background(), checkReq("x", bearer(tok), nil))
				d := time.Since(t0)
				if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != http.StatusUnauthorized {
					t.Errorf("random kid not denied with 401: %v %v", resp, err)
					return
				}
				mu.Lock()
				slowest = max(slowest, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if elapsed > iss.UnknownKIDCooldown.D() {
		t.Skipf("flood took %s, longer than the cooldown; machine too loaded to judge", elapsed)
	}
	// A fetch takes 2s; a Check that waited for one would take at least that long.
	if slowest > time.Second {
		t.Fatalf("slowest Check took %s: a request waited for a key fetch", slowest)
	}
	eventually(t, 5*time.Second, func() bool { return js.fetches.Load() > fetchesBefore })
	time.Sleep(500 * time.Millisecond)
	if n := js.fetches.Load() - fetchesBefore; n != 1 {
		t.Fatalf("%d Checks with random kids caused %d fetches within one cooldown, want 1", workers*perWorker, n)
	}
	if g := runtime.NumGoroutine(); g > goroutinesBefore+5 {
		t.Fatalf("goroutines grew from %d to %d", goroutinesBefore, g)
	}
	t.Logf("%d checks in %s, slowest %s, 1 fetch", workers*perWorker, elapsed.Round(time.Millisecond), slowest.Round(time.Microsecond))
}

func TestJWKS_BadEndpointKeepsLastGoodKeys(t *testing.T) {
	oversized := `{"keys":[` + strings.Repeat(`{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"},`, 3000) + `{}]}`
	cases := []struct {
		name   string
		doc    string
		status int
		delay  time.Duration
	}{
		{name: "slow endpoint", doc: "", status: http.StatusOK, delay: 3 * time.Second},
		{name: "failing endpoint", doc: "oops", status: http.StatusInternalServerError},
		{name: "oversized response", doc: oversized, status: http.StatusOK},
		{name: "not JSON", doc: "<html>", status: http.StatusOK},
		{name: "no usable key", doc: `{"keys":[{"kty":"oct","kid":"key-a","k":"c2VjcmV0"}]}`, status: http.StatusOK},
		{name: "no keys member", doc: `{}`, status: http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newEdSigner(t, "key-a")
			js := newJWKSServer(t, jwksOf(t, a))
			iss := issuerFor(js, mainIss)
			iss.FetchTimeout = config.Duration(300 * time.Millisecond)
			iss.MaxJWKSBytes = 64 << 10
			s := startServer(t, authzConfig(iss), allTenants(), js.Client())
			waitReady(t, s)

			js.set([]byte(tc.doc), tc.status, tc.delay)
			errors := s.metrics.refreshes.WithLabelValues(mainIss, "error")
			check(t, s, checkReq("x", bearer(freshToken(t, newEdSigner(t, "key-z"), mainIss)), nil))
			eventually(t, 5*time.Second, func() bool { return testutil.ToFloat64(errors) >= 1 })

			assertAllowed(t, check(t, s, checkReq("x", bearer(freshToken(t, a, mainIss)), nil)), acme, "user-1")
			if err := s.Ready(); err != nil {
				t.Fatalf("ready after a failed refresh: %v", err)
			}
		})
	}
}

func TestJWKS_FileIsReloadedWhenItChanges(t *testing.T) {
	a, b := newEdSigner(t, "key-a"), newEdSigner(t, "key-b")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksOf(t, a), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authzConfig(config.Issuer{Issuer: mainIss, Audiences: []string{audience}, JWKSFile: path})
	s := startServer(t, cfg, allTenants(), http.DefaultClient)
	waitReady(t, s)
	assertAllowed(t, check(t, s, checkReq("x", bearer(freshToken(t, a, mainIss)), nil)), acme, "user-1")

	if err := os.WriteFile(path, jwksOf(t, b), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		return check(t, s, checkReq("x", bearer(freshToken(t, b, mainIss)), nil)).GetOkResponse() != nil
	})
	tok := freshToken(t, a, mainIss)
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusUnauthorized, tok)
}

func TestJWKS_OIDCDiscovery(t *testing.T) {
	cases := []struct {
		name      string
		issuerFor func(url string) string // the issuer the discovery document names
		wantReady bool
	}{
		{name: "document naming the issuer is used", issuerFor: func(u string) string { return u }, wantReady: true},
		{name: "document naming another issuer is refused", issuerFor: func(string) string { return "https://evil.example" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newEdSigner(t, "key-a")
			var srv *httptest.Server
			srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/.well-known/openid-configuration":
					_ = json.NewEncoder(w).Encode(map[string]string{"issuer": tc.issuerFor(srv.URL), "jwks_uri": srv.URL + "/keys"})
				case "/keys":
					_, _ = w.Write(jwksOf(t, a))
				default:
					http.NotFound(w, r)
				}
			}))
			t.Cleanup(srv.Close)
			cfg := authzConfig(config.Issuer{Issuer: srv.URL, Audiences: []string{audience}, Discovery: true})
			s := startServer(t, cfg, allTenants(), srv.Client())
			tok := freshToken(t, a, srv.URL)
			if !tc.wantReady {
				time.Sleep(300 * time.Millisecond)
				assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusServiceUnavailable, tok)
				return
			}
			waitReady(t, s)
			assertAllowed(t, check(t, s, checkReq("x", bearer(tok), nil)), acme, "user-1")
		})
	}
}
