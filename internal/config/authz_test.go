package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLoad_AuthzSectionWithDefaults(t *testing.T) {
	p := writeConfig(t, `
authz:
  leeway: 10s
  cookie: tg_session
  remove_authorization: true
  issuers:
    - issuer: https://login.example.com
      audiences: [https://api.example.com]
      jwks_url: https://login.example.com/.well-known/jwks.json
    - issuer: https://idp.acme.example
      audiences: [acme-api]
      discovery: true
      tenants: [acme]
      algorithms: [ES256]
      tenant_claim: org
      tenant_claim_format: slug
    - issuer: internal
      audiences: [tenantgate]
      hmac_secret: 0123456789abcdef0123456789abcdef
`)
	cfg, err := Load(p, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Authz
	if a.Leeway.D() != 10*time.Second || a.MaxLifetime.D() != 24*time.Hour || a.MaxTokenBytes != 8<<10 || a.Cookie != "tg_session" || !a.RemoveAuthorization {
		t.Fatalf("authz = %+v", a)
	}
	first := a.Issuers[0].WithDefaults()
	if first.TenantClaim != "tenant_id" || first.TenantClaimFormat != "id" || strings.Join(first.Algorithms, ",") != "RS256,ES256,EdDSA" ||
		first.RefreshInterval.D() != 5*time.Minute || first.UnknownKIDCooldown.D() != 30*time.Second || first.KeySource() != "jwks_url" {
		t.Fatalf("issuer defaults = %+v", first)
	}
	if got := a.Issuers[1].WithDefaults(); got.KeySource() != "discovery" || got.TenantClaim != "org" || got.Tenants[0] != "acme" {
		t.Fatalf("issuer[1] = %+v", got)
	}
	if got := a.Issuers[2].WithDefaults(); got.KeySource() != "hmac_secret" || strings.Join(got.Algorithms, ",") != "HS256" {
		t.Fatalf("issuer[2] = %+v", got)
	}
	out, err := cfg.Redacted()
	if err != nil || strings.Contains(string(out), "0123456789abcdef") {
		t.Fatalf("printed config leaks the hmac secret: %v\n%s", err, out)
	}
}

// TestValidate_AuthzMistakesNameTheirKey: every bad authz value stops start-up with its key.
func TestValidate_AuthzMistakesNameTheirKey(t *testing.T) {
	good := func() Issuer {
		return Issuer{Issuer: "https://login.example.com", Audiences: []string{"api"}, JWKSURL: "https://login.example.com/jwks"}
	}
	cases := []struct {
		name   string
		mutate func(a *Authz)
		key    string
	}{
		{"negative leeway", func(a *Authz) { a.Leeway = Duration(-time.Second) }, "authz.leeway"},
		{"huge leeway", func(a *Authz) { a.Leeway = Duration(time.Hour) }, "authz.leeway"},
		{"zero max lifetime", func(a *Authz) { a.MaxLifetime = 0 }, "authz.max_lifetime"},
		{"tiny token cap", func(a *Authz) { a.MaxTokenBytes = 10 }, "authz.max_token_bytes"},
		{"bad cookie name", func(a *Authz) { a.Cookie = "a b" }, "authz.cookie"},
		{"authorization as credential header", func(a *Authz) { a.Header = "Authorization" }, "authz.header"},
		{"tenant header as credential header", func(a *Authz) { a.Header = "x-tenant-token" }, "authz.header"},
		{"negative cache size", func(a *Authz) { a.CacheSize = -1 }, "authz.cache_size"},
		{"zero cache ttl", func(a *Authz) { a.CacheTTL = 0 }, "authz.cache_ttl"},
		{"issuer missing", func(a *Authz) { i := good(); i.Issuer = ""; a.Issuers = []Issuer{i} }, "authz.issuers[0].issuer"},
		{"issuer twice", func(a *Authz) { a.Issuers = []Issuer{good(), good()} }, "authz.issuers[1].issuer"},
		{"no audience", func(a *Authz) { i := good(); i.Audiences = nil; a.Issuers = []Issuer{i} }, "authz.issuers[0].audiences"},
		{"empty audience", func(a *Authz) { i := good(); i.Audiences = []string{" "}; a.Issuers = []Issuer{i} }, "authz.issuers[0].audiences[0]"},
		{"no key source", func(a *Authz) { i := good(); i.JWKSURL = ""; a.Issuers = []Issuer{i} }, "authz.issuers[0]"},
		{"two key sources", func(a *Authz) { i := good(); i.JWKSFile = "keys.json"; a.Issuers = []Issuer{i} }, "authz.issuers[0]"},
		{"plain http jwks", func(a *Authz) { i := good(); i.JWKSURL = "http://login.example.com/jwks"; a.Issuers = []Issuer{i} }, "authz.issuers[0].jwks_url"},
		{"discovery on a non-https issuer", func(a *Authz) {
			i := good()
			i.JWKSURL = ""
			i.Discovery = true
			i.Issuer = "login"
			a.Issuers = []Issuer{i}
		}, "authz.issuers[0].issuer"},
		{"alg none", func(a *Authz) { i := good(); i.Algorithms = []string{"none"}; a.Issuers = []Issuer{i} }, "authz.issuers[0].algorithms[0]"},
		{"HMAC from a JWKS", func(a *Authz) { i := good(); i.Algorithms = []string{"RS256", "HS256"}; a.Issuers = []Issuer{i} }, "authz.issuers[0].algorithms[1]"},
		{"asymmetric alg with a secret", func(a *Authz) {
			i := good()
			i.JWKSURL, i.HMACSecret, i.Algorithms = "", Secret(strings.Repeat("k", 32)), []string{"RS256"}
			a.Issuers = []Issuer{i}
		}, "authz.issuers[0].algorithms[0]"},
		{"short hmac secret", func(a *Authz) { i := good(); i.JWKSURL, i.HMACSecret = "", "short-secret"; a.Issuers = []Issuer{i} }, "authz.issuers[0].hmac_secret"},
		{"tenant claim with a space", func(a *Authz) { i := good(); i.TenantClaim = "tenant id"; a.Issuers = []Issuer{i} }, "authz.issuers[0].tenant_claim"},
		{"unknown tenant claim format", func(a *Authz) { i := good(); i.TenantClaimFormat = "name"; a.Issuers = []Issuer{i} }, "authz.issuers[0].tenant_claim_format"},
		{"sub-second refresh", func(a *Authz) { i := good(); i.RefreshInterval = Duration(time.Millisecond); a.Issuers = []Issuer{i} }, "authz.issuers[0].refresh_interval"},
		{"tiny cooldown", func(a *Authz) {
			i := good()
			i.UnknownKIDCooldown = Duration(time.Millisecond)
			a.Issuers = []Issuer{i}
		}, "authz.issuers[0].unknown_kid_cooldown"},
		{"long fetch timeout", func(a *Authz) { i := good(); i.FetchTimeout = Duration(time.Hour); a.Issuers = []Issuer{i} }, "authz.issuers[0].fetch_timeout"},
		{"tiny jwks cap", func(a *Authz) { i := good(); i.MaxJWKSBytes = 10; a.Issuers = []Issuer{i} }, "authz.issuers[0].max_jwks_bytes"},
		{"empty bound tenant", func(a *Authz) { i := good(); i.Tenants = []string{""}; a.Issuers = []Issuer{i} }, "authz.issuers[0].tenants[0]"},
		{"bad typ", func(a *Authz) { i := good(); i.Types = []string{"a b"}; a.Issuers = []Issuer{i} }, "authz.issuers[0].types[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			tc.mutate(&cfg.Authz)
			err := cfg.Validate()
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Fatalf("error = %v, want one naming %s", err, tc.key)
			}
		})
	}
}

func TestLoad_UnknownAuthzKeyIsNamed(t *testing.T) {
	p := writeConfig(t, "authz:\n  issuers:\n    - issuer: x\n      jwks_uri: https://x\n")
	_, err := Load(p, noEnv)
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "authz.issuers[0].jwks_uri" {
		t.Fatalf("error = %v", err)
	}
}
