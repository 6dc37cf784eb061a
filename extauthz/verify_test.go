package extauthz

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/config"
)

// TestVerifier_StandaloneForAdminTokens is how another part (the provisioner's admin API) checks
// bearer tokens with the same code: claims without a tenant, the scope, typed reasons.
func TestVerifier_StandaloneForAdminTokens(t *testing.T) {
	ed := newEdSigner(t, "admin-1")
	js := newJWKSServer(t, jwksOf(t, ed))
	iss := issuerFor(js, mainIss)
	iss.Audiences = []string{"tenantgate-admin"}
	v, err := NewVerifier(authzConfig(iss), WithHTTPClient(js.Client()), WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- v.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	eventually(t, 5*time.Second, func() bool { return v.Ready() == nil })

	now := time.Now()
	admin := ed.sign(t, nil, map[string]any{"iss": mainIss, "aud": "tenantgate-admin", "sub": "ops@example.com",
		"scope": "tenants:read tenants:write", "iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix()})
	for _, tc := range []struct {
		lines []string
		want  Reason
	}{
		{[]string{"Bearer " + admin}, ReasonOK},
		{[]string{"bearer  " + admin}, ReasonOK},
		{nil, ReasonMissingCredential},
		{[]string{"Bearer " + admin, "Bearer " + admin}, ReasonMultipleCredentials},
		{[]string{"Basic YTpi"}, ReasonMalformedToken},
		{[]string{"Bearer " + strings.Repeat("a", 9000)}, ReasonTokenTooLarge},
	} {
		tok, err := v.BearerToken(tc.lines)
		if ReasonOf(err) != tc.want || (err == nil && tok != admin) {
			t.Fatalf("BearerToken(%.20q) = %v, want %s", tc.lines, err, tc.want)
		}
	}
	c, err := v.Verify(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "ops@example.com" || c.Tenant != "" || len(c.Scope) != 2 || c.Scope[1] != "tenants:write" || c.Issuer != mainIss {
		t.Fatalf("claims = %+v", c)
	}
	// A tenant token for another audience is not an admin token.
	_, err = v.Verify(ctx, ed.sign(t, nil, claimsFor(mainIss, acme.ID)))
	var e *Error
	if !errors.As(err, &e) || e.Reason != ReasonBadAudience || ReasonOf(err) != ReasonBadAudience {
		t.Fatalf("err = %v, want bad_audience", err)
	}
}

// TestVerifier_CacheRechecksExpiry: a cached token stops verifying the moment it expires.
func TestVerifier_CacheRechecksExpiry(t *testing.T) {
	ed := newEdSigner(t, "k1")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksOf(t, ed), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := now
	v, err := NewVerifier(authzConfig(config.Issuer{Issuer: mainIss, Audiences: []string{audience}, JWKSFile: path}),
		WithClock(func() time.Time { return clock }))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.order[0].keys.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok := ed.sign(t, nil, with(claimsFor(mainIss, acme.ID), "exp", now.Add(time.Minute).Unix()))
	for range 2 { // the second is a cache hit
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if v.cache.len() != 1 {
		t.Fatalf("cache holds %d entries", v.cache.len())
	}
	clock = now.Add(2 * time.Minute) // past exp, and past exp+leeway
	if _, err := v.Verify(context.Background(), tok); ReasonOf(err) != ReasonExpired {
		t.Fatalf("expired cached token: err = %v", err)
	}
}

// TestVerifier_CacheIsBounded: the cache never holds more than its size.
func TestVerifier_CacheIsBounded(t *testing.T) {
	ed := newEdSigner(t, "k1")
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksOf(t, ed), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := authzConfig(config.Issuer{Issuer: mainIss, Audiences: []string{audience}, JWKSFile: path})
	cfg.CacheSize = 10
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.order[0].keys.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if _, err := v.Verify(context.Background(), ed.sign(t, nil, with(claimsFor(mainIss, acme.ID), "jti", fmt.Sprint(i)))); err != nil {
			t.Fatal(err)
		}
	}
	if v.cache.len() != 10 {
		t.Fatalf("cache holds %d entries, want 10", v.cache.len())
	}
}
