package extauthz

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/config"
)

// fuzzNow is the fixed clock of the fuzz target, so the seed tokens stay valid.
var fuzzNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// fuzzSigner is a fixed key: the checked-in seed corpus holds tokens it signed.
func fuzzSigner() signer {
	seed := []byte("tenantgate-fuzz-seed-key-32bytes")
	return signer{kid: "fuzz1", alg: "EdDSA", priv: ed25519.NewKeyFromSeed(seed)}
}

func fuzzClaims() map[string]any {
	return map[string]any{
		"iss": mainIss, "aud": audience, "sub": "user-1", "tenant_id": acme.ID,
		"iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Hour).Unix(),
	}
}

// FuzzCheckToken drives the whole token path (credential parsing, size cap, JOSE header and payload
// scanning, key selection, signature and claims) with arbitrary Authorization values. Whatever the
// input, Check answers without an RPC error, a denial stamps nothing and never echoes the input,
// and an allow happens only for a token that really is signed by the issuer's key for acme.
func FuzzCheckToken(f *testing.F) {
	s := fuzzSigner()
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, jwksOf(f, s), 0o600); err != nil {
		f.Fatal(err)
	}
	cfg := config.Default().Authz
	cfg.Issuers = []config.Issuer{{Issuer: mainIss, Audiences: []string{audience}, JWKSFile: path}}
	srv, err := NewServer(cfg, baseDomain, allTenants(), WithRegisterer(prometheus.NewRegistry()), WithClock(func() time.Time { return fuzzNow }))
	if err != nil {
		f.Fatal(err)
	}
	// Load the keys once, synchronously: the fuzz target needs no background loop.
	if err := srv.verifier.order[0].keys.refresh(context.Background()); err != nil {
		f.Fatal(err)
	}
	valid := s.sign(f, nil, fuzzClaims())
	f.Add("Bearer " + valid)
	f.Add("bearer " + valid)
	f.Add("Bearer " + s.sign(f, map[string]any{"typ": "at+jwt"}, fuzzClaims()))
	f.Add("Bearer " + s.sign(f, map[string]any{"jku": "https://evil.example/jwks"}, fuzzClaims()))
	f.Add("Bearer " + valid[:len(valid)-2] + "AA")
	f.Add("Bearer " + valid + "," + "Bearer " + valid)
	f.Add("Bearer " + strings.Repeat("a", 9000))
	f.Add("Basic dXNlcjpwYXNz")

	pub := s.priv.Public()
	f.Fuzz(func(t *testing.T, authorization string) {
		resp, err := srv.Check(context.Background(), checkReq("api.example.com", map[string]string{"authorization": authorization}, nil))
		if err != nil {
			t.Fatalf("Check returned an RPC error: %v", err)
		}
		if resp.GetOkResponse() == nil {
			status := int(resp.GetDeniedResponse().GetStatus().GetCode())
			if resp.GetErrorResponse() != nil {
				status = int(resp.GetErrorResponse().GetStatus().GetCode())
			}
			assertDenied(t, resp, status, strings.TrimSpace(authorization))
			if status != http.StatusUnauthorized && status != http.StatusForbidden {
				t.Fatalf("unexpected status %d", status)
			}
			return
		}
		assertAllowed(t, resp, acme, "user-1")
		// An allow must be for a token that verifies on its own under the real key.
		scheme, tok, _ := strings.Cut(strings.TrimSpace(authorization), " ")
		if !strings.EqualFold(scheme, "bearer") {
			t.Fatalf("allowed a credential with scheme %q", scheme)
		}
		tok = strings.TrimSpace(tok)
		claims := jwt.MapClaims{}
		parsed, err := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(func() time.Time { return fuzzNow })).
			ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return pub, nil })
		if err != nil || !parsed.Valid || claims["tenant_id"] != acme.ID || claims["iss"] != mainIss {
			t.Fatalf("allowed a token that does not verify independently: %v", err)
		}
	})
}
