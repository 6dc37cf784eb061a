package config

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Authz configures the ext_authz service. The authz component owns this file.
type Authz struct {
	// Issuers are the trusted token issuers. A token from any other issuer is denied.
	Issuers []Issuer `yaml:"issuers"`
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway Duration `yaml:"leeway"`
	// MaxLifetime bounds exp-iat (and exp-now): a token valid for longer is denied.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// MaxTokenBytes caps the credential before any parsing.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// Cookie, if set, is a cookie that may carry the token instead of the Authorization header.
	Cookie string `yaml:"cookie"`
	// Header, if set, is a request header that may carry the token instead of Authorization.
	Header string `yaml:"header"`
	// RemoveAuthorization removes the credential header (authorization, and Header if set) before the
	// request goes upstream.
	RemoveAuthorization bool `yaml:"remove_authorization"`
	// CacheSize bounds the verified-token cache (entries). 0 disables the cache.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL bounds how long a verified token is remembered (never past its exp).
	CacheTTL Duration `yaml:"cache_ttl"`
}

// Issuer is one trusted token issuer and where its keys come from. Exactly one key source is set:
// jwks_url, discovery, jwks_file or hmac_secret.
type Issuer struct {
	// Issuer is the exact `iss` value of its tokens.
	Issuer string `yaml:"issuer"`
	// Audiences: a token's `aud` must hold at least one of these.
	Audiences []string `yaml:"audiences"`
	// Algorithms allowed for this issuer (default RS256, ES256, EdDSA). HS256/384/512 only with
	// hmac_secret.
	Algorithms []string `yaml:"algorithms"`
	// TenantClaim is the claim naming the tenant (default tenant_id).
	TenantClaim string `yaml:"tenant_claim"`
	// TenantClaimFormat is the shape of the tenant claim: id (a tenant UUID, default) or slug.
	TenantClaimFormat string `yaml:"tenant_claim_format"`
	// JWKSURL is an https JWKS endpoint, refreshed in the background.
	JWKSURL string `yaml:"jwks_url"`
	// Discovery finds the JWKS through <issuer>/.well-known/openid-configuration.
	Discovery bool `yaml:"discovery"`
	// JWKSFile is a local JWKS file, reloaded when it changes.
	JWKSFile string `yaml:"jwks_file"`
	// HMACSecret is a shared secret (at least 32 bytes) for HS256/384/512 tokens.
	HMACSecret Secret `yaml:"hmac_secret"`
	// RefreshInterval is how often remote keys are fetched again (default 5m).
	RefreshInterval Duration `yaml:"refresh_interval"`
	// UnknownKIDCooldown: a token with an unknown kid triggers at most one refresh per cooldown
	// (default 30s).
	UnknownKIDCooldown Duration `yaml:"unknown_kid_cooldown"`
	// FetchTimeout bounds one JWKS or discovery fetch (default 5s).
	FetchTimeout Duration `yaml:"fetch_timeout"`
	// MaxJWKSBytes caps a JWKS or discovery response (default 512 KiB).
	MaxJWKSBytes int `yaml:"max_jwks_bytes"`
	// Tenants binds the issuer: when set, its tokens may only name these tenants (ids or slugs).
	Tenants []string `yaml:"tenants"`
	// Types lists the accepted `typ` header values, compared case-insensitively with an optional
	// "application/" prefix (default JWT and at+jwt). TypeRequired denies tokens without `typ`.
	Types        []string `yaml:"types"`
	TypeRequired bool     `yaml:"type_required"`
}

// Defaults of the authz section and of every issuer. Every authz default lives here.
const (
	DefaultTenantClaim        = "tenant_id"
	DefaultMaxTokenBytes      = 8 << 10
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultUnknownKIDCooldown = 30 * time.Second
	DefaultFetchTimeout       = 5 * time.Second
	DefaultMaxJWKSBytes       = 512 << 10
)

// Algorithm families an issuer may allow.
var (
	AsymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	HMACAlgorithms       = []string{"HS256", "HS384", "HS512"}
	defaultAlgorithms    = []string{"RS256", "ES256", "EdDSA"}
	defaultTypes         = []string{"JWT", "at+jwt"}
)

func defaultAuthz() Authz {
	return Authz{
		Leeway:        Duration(30 * time.Second),
		MaxLifetime:   Duration(24 * time.Hour),
		MaxTokenBytes: DefaultMaxTokenBytes,
		CacheSize:     10000,
		CacheTTL:      Duration(5 * time.Minute),
	}
}

// WithDefaults returns the issuer with every unset field at its default.
func (i Issuer) WithDefaults() Issuer {
	if len(i.Algorithms) == 0 {
		if i.HMACSecret != "" {
			i.Algorithms = []string{"HS256"}
		} else {
			i.Algorithms = slices.Clone(defaultAlgorithms)
		}
	}
	if i.TenantClaim == "" {
		i.TenantClaim = DefaultTenantClaim
	}
	if i.TenantClaimFormat == "" {
		i.TenantClaimFormat = "id"
	}
	if i.RefreshInterval == 0 {
		i.RefreshInterval = Duration(DefaultRefreshInterval)
	}
	if i.UnknownKIDCooldown == 0 {
		i.UnknownKIDCooldown = Duration(DefaultUnknownKIDCooldown)
	}
	if i.FetchTimeout == 0 {
		i.FetchTimeout = Duration(DefaultFetchTimeout)
	}
	if i.MaxJWKSBytes == 0 {
		i.MaxJWKSBytes = DefaultMaxJWKSBytes
	}
	if len(i.Types) == 0 {
		i.Types = slices.Clone(defaultTypes)
	}
	return i
}

// KeySource names the issuer's key source: "jwks_url", "discovery", "jwks_file" or "hmac_secret"
// ("" when none is set; validation rejects that).
func (i Issuer) KeySource() string {
	switch {
	case i.JWKSURL != "":
		return "jwks_url"
	case i.Discovery:
		return "discovery"
	case i.JWKSFile != "":
		return "jwks_file"
	case i.HMACSecret != "":
		return "hmac_secret"
	}
	return ""
}

func (a Authz) validate(key string) error {
	if a.Leeway < 0 || a.Leeway.D() > 5*time.Minute {
		return keyErr(key+".leeway", "must be between 0s and 5m")
	}
	if a.MaxLifetime <= 0 {
		return keyErr(key+".max_lifetime", "must be positive")
	}
	if a.MaxTokenBytes < 256 || a.MaxTokenBytes > 64<<10 {
		return keyErr(key+".max_token_bytes", "must be between 256 and 65536")
	}
	if a.Cookie != "" && !validToken(a.Cookie) {
		return keyErr(key+".cookie", "must be a cookie name (got %q)", a.Cookie)
	}
	if a.Header != "" {
		h := strings.ToLower(a.Header)
		if !validToken(h) || h == "authorization" || h == "cookie" || h == "host" || strings.HasPrefix(h, ":") || strings.HasPrefix(h, "x-tenant-") {
			return keyErr(key+".header", "must be a header name other than authorization, cookie, host or x-tenant-* (got %q)", a.Header)
		}
	}
	if a.CacheSize < 0 || a.CacheSize > 10_000_000 {
		return keyErr(key+".cache_size", "must be between 0 and 10000000")
	}
	if a.CacheTTL <= 0 {
		return keyErr(key+".cache_ttl", "must be positive")
	}
	seen := map[string]bool{}
	for n, iss := range a.Issuers {
		k := fmt.Sprintf("%s.issuers[%d]", key, n)
		if seen[iss.Issuer] {
			return keyErr(k+".issuer", "issuer %q is listed twice", iss.Issuer)
		}
		seen[iss.Issuer] = true
		if err := iss.WithDefaults().validate(k); err != nil {
			return err
		}
	}
	return nil
}

func (i Issuer) validate(key string) error {
	if i.Issuer == "" {
		return keyErr(key+".issuer", "is required")
	}
	if strings.ContainsFunc(i.Issuer, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return keyErr(key+".issuer", "must not hold control characters")
	}
	if len(i.Audiences) == 0 {
		return keyErr(key+".audiences", "at least one audience is required")
	}
	for n, aud := range i.Audiences {
		if strings.TrimSpace(aud) == "" {
			return keyErr(fmt.Sprintf("%s.audiences[%d]", key, n), "must not be empty")
		}
	}
	sources := 0
	for _, set := range []bool{i.JWKSURL != "", i.Discovery, i.JWKSFile != "", i.HMACSecret != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return keyErr(key, "exactly one key source is required: jwks_url, discovery, jwks_file or hmac_secret")
	}
	hmac := i.HMACSecret != ""
	for n, alg := range i.Algorithms {
		k := fmt.Sprintf("%s.algorithms[%d]", key, n)
		switch {
		case slices.Contains(AsymmetricAlgorithms, alg):
			if hmac {
				return keyErr(k, "%s needs public keys; an issuer with hmac_secret allows only %s", alg, strings.Join(HMACAlgorithms, ", "))
			}
		case slices.Contains(HMACAlgorithms, alg):
			if !hmac {
				return keyErr(k, "%s is allowed only with hmac_secret, never with keys from a JWKS", alg)
			}
		default:
			return keyErr(k, "unknown or forbidden algorithm %q (allowed: %s, %s)", alg,
				strings.Join(AsymmetricAlgorithms, ", "), strings.Join(HMACAlgorithms, ", "))
		}
	}
	if hmac && len(i.HMACSecret) < 32 {
		return keyErr(key+".hmac_secret", "must be at least 32 bytes")
	}
	if i.JWKSURL != "" {
		if err := checkHTTPS(i.JWKSURL); err != nil {
			return keyErr(key+".jwks_url", "%v", err)
		}
	}
	if i.Discovery {
		if err := checkHTTPS(i.Issuer); err != nil {
			return keyErr(key+".issuer", "discovery needs an https issuer URL: %v", err)
		}
	}
	if i.TenantClaim == "" || strings.ContainsFunc(i.TenantClaim, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return keyErr(key+".tenant_claim", "must be a claim name without spaces or control characters")
	}
	if i.TenantClaimFormat != "id" && i.TenantClaimFormat != "slug" {
		return keyErr(key+".tenant_claim_format", "must be id or slug (got %q)", i.TenantClaimFormat)
	}
	if i.RefreshInterval.D() < time.Second {
		return keyErr(key+".refresh_interval", "must be at least 1s")
	}
	if i.UnknownKIDCooldown.D() < 100*time.Millisecond {
		return keyErr(key+".unknown_kid_cooldown", "must be at least 100ms")
	}
	if i.FetchTimeout <= 0 || i.FetchTimeout.D() > time.Minute {
		return keyErr(key+".fetch_timeout", "must be between 0s and 1m")
	}
	if i.MaxJWKSBytes < 1024 || i.MaxJWKSBytes > 16<<20 {
		return keyErr(key+".max_jwks_bytes", "must be between 1024 and 16777216")
	}
	for n, t := range i.Tenants {
		if strings.TrimSpace(t) == "" {
			return keyErr(fmt.Sprintf("%s.tenants[%d]", key, n), "must be a tenant id or slug")
		}
	}
	for n, t := range i.Types {
		if !validToken(strings.ReplaceAll(t, "/", "")) {
			return keyErr(fmt.Sprintf("%s.types[%d]", key, n), "must be a media type such as JWT or at+jwt (got %q)", t)
		}
	}
	return nil
}

func checkHTTPS(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("must be an https URL (got %q)", raw)
	}
	return nil
}

// validToken reports whether s is an RFC 7230 token (a valid header or cookie name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return http.CanonicalHeaderKey(s) != ""
}
