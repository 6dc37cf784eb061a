package extauthz

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Claims are the facts of a verified token. Verify may return the same slices to several callers:
// never modify them.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	Tenant    string // the tenant claim (an id or a slug, per the issuer's tenant_claim_format); "" if absent
	Scope     []string
	ID        string // jti
	ExpiresAt time.Time
	IssuedAt  time.Time // zero when the token has no iat

	// TenantIsSlug reports that Tenant is a slug rather than an id.
	TenantIsSlug bool
	// bound lists the tenants the issuer may mint tokens for (ids or slugs); nil means any.
	bound []string
}

// MayName reports whether the token's issuer may vouch for t (issuer binding).
func (c *Claims) MayName(t *tenant.Tenant) bool {
	return c.bound == nil || slices.Contains(c.bound, t.ID) || slices.Contains(c.bound, t.Slug)
}

// Verifier checks JWTs against the configured issuers. It is safe for concurrent use; Run keeps
// the keys fresh in the background and no Verify ever waits on a fetch.
type Verifier struct {
	issuers     map[string]*verifierIssuer
	order       []*verifierIssuer
	cache       *tokenCache
	maxBytes    int
	maxLifetime time.Duration
	leeway      time.Duration
	now         func() time.Time
	metrics     *metrics
	log         *slog.Logger
}

type verifierIssuer struct {
	cfg    config.Issuer
	keys   *issuerKeys
	parser *jwt.Parser
	types  []string // lower-case, without "application/"
}

// Option configures a Verifier or a Server.
type Option func(*options)

type options struct {
	registryUp func() bool
	client     *http.Client
	log        *slog.Logger
	registry   prometheus.Registerer
	now        func() time.Time
}

// WithHTTPClient sets the client that fetches JWKS and discovery documents (default: a client
// with TLS verification and no redirects to other schemes).
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithRegisterer registers the metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registry = r } }

// WithRegistryHealth tells Check whether the tenant registry is reachable. While it is not, a
// tenant missing from the snapshot fails closed with 503 instead of 403: it may be newly created.
func WithRegistryHealth(up func() bool) Option { return func(o *options) { o.registryUp = up } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

func buildOptions(opts []Option) options {
	o := options{log: slog.Default(), now: time.Now}
	for _, f := range opts {
		f(&o)
	}
	if o.client == nil {
		o.client = &http.Client{
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if req.URL.Scheme != "https" || len(via) >= 3 {
					return errors.New("refusing redirect")
				}
				return nil
			},
		}
	}
	return o
}

// NewVerifier builds a verifier for the issuers of cfg. cfg must have passed validation.
func NewVerifier(cfg config.Authz, opts ...Option) (*Verifier, error) {
	o := buildOptions(opts)
	m, err := newMetrics(o.registry)
	if err != nil {
		return nil, err
	}
	return newVerifier(cfg, o, m), nil
}

func newVerifier(cfg config.Authz, o options, m *metrics) *Verifier {
	v := &Verifier{
		issuers:     make(map[string]*verifierIssuer, len(cfg.Issuers)),
		cache:       newTokenCache(cfg.CacheSize, cfg.CacheTTL.D()),
		maxBytes:    cfg.MaxTokenBytes,
		maxLifetime: cfg.MaxLifetime.D(),
		leeway:      cfg.Leeway.D(),
		now:         o.now,
		metrics:     m,
		log:         o.log,
	}
	for _, ic := range cfg.Issuers {
		ic = ic.WithDefaults()
		vi := &verifierIssuer{
			cfg:  ic,
			keys: newIssuerKeys(ic, o.client, o.log, m, o.now),
			parser: jwt.NewParser(
				jwt.WithValidMethods(ic.Algorithms),
				jwt.WithIssuer(ic.Issuer),
				jwt.WithAudience(ic.Audiences...),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithLeeway(cfg.Leeway.D()),
				jwt.WithTimeFunc(o.now),
				jwt.WithStrictDecoding(),
			),
		}
		vi.keys.onRevoke = v.cache.dropRevoked
		for _, t := range ic.Types {
			vi.types = append(vi.types, normType(t))
		}
		v.issuers[ic.Issuer] = vi
		v.order = append(v.order, vi)
	}
	return v
}

// Run keeps every issuer's keys fresh until ctx ends.
func (v *Verifier) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, vi := range v.order {
		g.Go(func() error { return vi.keys.run(ctx) })
	}
	return g.Wait()
}

// Ready reports an error naming the issuers whose keys were never loaded.
func (v *Verifier) Ready() error {
	var missing []string
	for _, vi := range v.order {
		if vi.keys.keys() == nil {
			missing = append(missing, vi.cfg.Issuer)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no keys loaded yet for issuer(s) %s", strings.Join(missing, ", "))
	}
	return nil
}

// header is what a token's JOSE header may say.
type header struct {
	alg, kid, typ string
	hasTyp        bool
}

// Verify checks a compact JWT: its size, structure, header, issuer, key, signature, time claims,
// audience and tenant claim. The error is an *Error carrying the Reason.
func (v *Verifier) Verify(_ context.Context, token string) (Claims, error) {
	c, _, err := v.verifyCached(token)
	return c, err
}

// verifyCached is Verify that also returns the cache entry of the token (nil without a cache).
func (v *Verifier) verifyCached(token string) (Claims, *cacheEntry, error) {
	if len(token) > v.maxBytes {
		return Claims{}, nil, fail(ReasonTokenTooLarge, nil)
	}
	now := v.now()
	// The token is only read: hash it without copying.
	sum := sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
	if e := v.cache.get(sum, now); e != nil {
		v.metrics.cacheHit.Inc()
		return e.claims, e, nil
	}
	v.metrics.cacheMiss.Inc()
	c, key, err := v.verify(token, now)
	if err != nil {
		return Claims{}, nil, err
	}
	return c, v.cache.put(sum, c, key, now), nil
}

func (v *Verifier) verify(token string, now time.Time) (Claims, *Key, error) {
	rawHeader, rawPayload, err := split(token)
	if err != nil {
		return Claims{}, nil, fail(ReasonMalformedToken, err)
	}
	hdr, err := parseHeader(rawHeader)
	if err != nil {
		return Claims{}, nil, err
	}
	iss, members, err := parsePayload(rawPayload)
	if err != nil {
		return Claims{}, nil, err
	}
	vi, ok := v.issuers[iss]
	if !ok {
		return Claims{}, nil, fail(ReasonUnknownIssuer, nil)
	}
	if !slices.Contains(vi.cfg.Algorithms, hdr.alg) {
		return Claims{}, nil, fail(ReasonAlgorithmNotAllowed, fmt.Errorf("alg %q", hdr.alg))
	}
	if err := vi.checkType(hdr); err != nil {
		return Claims{}, nil, err
	}
	set := vi.keys.keys()
	if set == nil {
		vi.keys.askRefresh() // traffic shortens the backoff of a failing first load, once per cooldown
		return Claims{}, nil, fail(ReasonKeysUnavailable, nil)
	}
	key, reason := set.lookup(hdr.kid)
	if reason == ReasonUnknownKey {
		vi.keys.askRefresh()
	}
	if reason != ReasonOK {
		return Claims{}, nil, fail(reason, nil)
	}
	if !key.fits(hdr.alg) {
		return Claims{}, nil, fail(ReasonKeyMismatch, fmt.Errorf("key %q does not fit alg %q", key.ID, hdr.alg))
	}
	var rc jwt.RegisteredClaims
	if _, err := vi.parser.ParseWithClaims(token, &rc, func(*jwt.Token) (any, error) { return key.public, nil }); err != nil {
		return Claims{}, nil, fail(reasonOfJWT(err), err)
	}
	c, err := v.claimsOf(vi, &rc, members, now)
	if err != nil {
		return Claims{}, nil, err
	}
	return c, key, nil
}

// claimsOf builds the verified facts and applies what the jwt parser does not: the lifetime bound
// and the tenant claim's shape.
func (v *Verifier) claimsOf(vi *verifierIssuer, rc *jwt.RegisteredClaims, members map[string]json.RawMessage, now time.Time) (Claims, error) {
	c := Claims{
		Issuer:       rc.Issuer,
		Subject:      rc.Subject,
		Audience:     rc.Audience,
		ID:           rc.ID,
		ExpiresAt:    rc.ExpiresAt.Time,
		TenantIsSlug: vi.cfg.TenantClaimFormat == "slug",
		bound:        vi.cfg.Tenants,
	}
	if rc.IssuedAt != nil {
		c.IssuedAt = rc.IssuedAt.Time
		if c.ExpiresAt.Sub(c.IssuedAt) > v.maxLifetime {
			return Claims{}, fail(ReasonLifetimeTooLong, nil)
		}
	}
	if c.ExpiresAt.Sub(now) > v.maxLifetime+v.leeway {
		return Claims{}, fail(ReasonLifetimeTooLong, nil)
	}
	if hasControl(c.Subject) {
		return Claims{}, fail(ReasonBadClaims, errors.New("sub holds control characters"))
	}
	if raw, ok := members[vi.cfg.TenantClaim]; ok {
		t, err := jsonString(raw)
		if err != nil || hasControl(t) {
			return Claims{}, fail(ReasonBadTenantClaim, err)
		}
		if c.TenantIsSlug {
			err = tenant.CheckSlug(t)
		} else {
			err = tenant.CheckID(t)
		}
		if err != nil {
			return Claims{}, fail(ReasonBadTenantClaim, err)
		}
		c.Tenant = t
	}
	if raw, ok := members["scope"]; ok {
		s, err := jsonString(raw)
		if err != nil || hasControl(s) {
			return Claims{}, fail(ReasonBadClaims, errors.New("scope is not a string"))
		}
		c.Scope = strings.Fields(s)
	}
	return c, nil
}

// checkType applies the issuer's typ policy (RFC 8725 section 3.11).
func (vi *verifierIssuer) checkType(h header) error {
	if !h.hasTyp {
		if vi.cfg.TypeRequired {
			return fail(ReasonBadType, errors.New("typ missing"))
		}
		return nil
	}
	if !slices.Contains(vi.types, normType(h.typ)) {
		return fail(ReasonBadType, fmt.Errorf("typ %q", h.typ))
	}
	return nil
}

func normType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// split returns the decoded header and payload of a compact JWS with exactly three non-empty parts.
func split(token string) (hdr, payload []byte, err error) {
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return nil, nil, errors.New("not a compact JWS")
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return nil, nil, errors.New("not a compact JWS (a JWE or more than three parts)")
	}
	if h == "" || p == "" || sig == "" {
		return nil, nil, errors.New("empty part")
	}
	enc := base64.RawURLEncoding.Strict()
	if hdr, err = enc.DecodeString(h); err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	if payload, err = enc.DecodeString(p); err != nil {
		return nil, nil, fmt.Errorf("payload: %w", err)
	}
	if _, err := enc.DecodeString(sig); err != nil {
		return nil, nil, fmt.Errorf("signature: %w", err)
	}
	return hdr, payload, nil
}

// forbiddenHeaders name keys or URLs the token would have us trust (RFC 8725 sections 3.10, 2.4),
// extensions we do not implement (crit, b64), or compression and encryption.
var forbiddenHeaders = map[string]bool{
	"jku": true, "x5u": true, "jwk": true, "x5c": true, "crit": true, "b64": true, "zip": true, "enc": true,
}

var headerNames = []string{"alg", "kid", "typ", "cty", "jku", "x5u", "jwk", "x5c", "crit", "b64", "zip", "enc"}

func parseHeader(raw []byte) (header, error) {
	var h header
	err := scanObject(raw, headerNames, func(name string, value json.RawMessage) error {
		if forbiddenHeaders[name] {
			return fail(ReasonForbiddenHeader, fmt.Errorf("header %q", name))
		}
		var err error
		switch name {
		case "alg":
			h.alg, err = jsonString(value)
		case "kid":
			h.kid, err = jsonString(value)
			if err == nil && (h.kid == "" || hasControl(h.kid)) {
				err = errors.New("kid is empty or holds control characters")
			}
		case "typ":
			h.typ, err = jsonString(value)
			h.hasTyp = true
		case "cty":
			return fail(ReasonBadType, errors.New("cty: nested tokens are not accepted"))
		}
		if err != nil {
			return fail(ReasonMalformedToken, fmt.Errorf("header %q: %w", name, err))
		}
		return nil
	})
	if err != nil {
		return header{}, asReason(err, "header")
	}
	if h.alg == "" {
		return header{}, fail(ReasonMalformedToken, errors.New("header without alg"))
	}
	return h, nil
}

// claimNames are the claims whose case variants are rejected: the registered ones encoding/json
// would otherwise match case-insensitively.
var claimNames = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"}

// parsePayload returns the issuer and every member of the payload, unverified: the issuer only
// selects which keys may verify the token.
func parsePayload(raw []byte) (string, map[string]json.RawMessage, error) {
	members := make(map[string]json.RawMessage, 8)
	err := scanObject(raw, claimNames, func(name string, value json.RawMessage) error {
		members[name] = value
		return nil
	})
	if err != nil {
		return "", nil, asReason(err, "payload")
	}
	for _, name := range [...]string{"exp", "nbf", "iat"} {
		if raw, ok := members[name]; ok && (len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
			return "", nil, fail(ReasonMalformedToken, fmt.Errorf("%s is not a NumericDate", name))
		}
	}
	iss, err := jsonString(members["iss"])
	if err != nil {
		return "", nil, fail(ReasonUnknownIssuer, errors.New("iss missing or not a string"))
	}
	return iss, members, nil
}

// asReason keeps an *Error as it is and classifies any other scan error.
func asReason(err error, part string) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if errors.Is(err, errAmbiguous) {
		return fail(ReasonAmbiguousJSON, fmt.Errorf("%s: %w", part, err))
	}
	return fail(ReasonMalformedToken, fmt.Errorf("%s: %w", part, err))
}

// reasonOfJWT maps golang-jwt's errors to reasons, the most specific first.
func reasonOfJWT(err error) Reason {
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ReasonIssuedInFuture
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonBadAudience
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonUnknownIssuer
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing), errors.Is(err, jwt.ErrTokenInvalidClaims):
		return ReasonBadClaims
	case errors.Is(err, jwt.ErrTokenUnverifiable), errors.Is(err, jwt.ErrInvalidKeyType):
		return ReasonKeyMismatch
	}
	return ReasonMalformedToken
}

// BearerToken returns the one bearer token among the Authorization header lines of an HTTP
// request (http.Header.Values("Authorization")), by the same rules as Check: scheme
// case-insensitive, size cap before parsing, more than one credential denied.
func (v *Verifier) BearerToken(authorization []string) (string, error) {
	rules := credentialRules{maxBytes: v.maxBytes}
	var r request
	for _, line := range authorization {
		rules.collect(&r, "authorization", line)
	}
	tok, err := rules.token(&r)
	if err != nil {
		return "", err
	}
	return tok, nil
}
