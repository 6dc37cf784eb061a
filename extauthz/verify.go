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
	cfg       config.Issuer
	keys      *issuerKeys
	methods   map[string]jwt.SigningMethod // the method for each allowed alg: golang-jwt's, ours for RS*
	validator *jwt.Validator               // golang-jwt's claims checks, with its strict options
	types     []string                     // lower-case, without "application/"
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
			cfg:       ic,
			keys:      newIssuerKeys(ic, o.client, o.log, m, o.now),
			methods:   make(map[string]jwt.SigningMethod, len(ic.Algorithms)),
			validator: newClaimsValidator(ic, cfg.Leeway.D(), o.now),
		}
		for _, alg := range ic.Algorithms {
			if m, ok := rsaPKCS1v15Methods[alg]; ok {
				vi.methods[alg] = m // verifies with the key's prepared modulus
			} else if m := jwt.GetSigningMethod(alg); m != nil {
				vi.methods[alg] = m
			}
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

// verify checks a token not found in the cache.
func (v *Verifier) verify(token string, now time.Time) (Claims, *Key, error) {
	t, err := v.prepare(token)
	if err != nil {
		return Claims{}, nil, err
	}
	rc, err := t.vi.checkSignedClaims(t)
	if err != nil {
		return Claims{}, nil, err
	}
	c, err := v.claimsOf(t.vi, &rc, t.members, now)
	if err != nil {
		return Claims{}, nil, err
	}
	return c, t.key, nil
}

// unverified is a token whose parts are decoded and scanned and whose key is chosen, its
// signature not yet checked.
type unverified struct {
	parts   jwsParts
	hdr     header
	members map[string]json.RawMessage
	vi      *verifierIssuer
	key     *Key
}

// prepare does what comes before the signature: size and structure, JOSE header, the unverified
// issuer that selects the keys, algorithm and typ policy, and the key named by kid.
func (v *Verifier) prepare(token string) (unverified, error) {
	parts, err := split(token)
	if err != nil {
		return unverified{}, fail(ReasonMalformedToken, err)
	}
	hdr, err := parseHeader(parts.header)
	if err != nil {
		return unverified{}, err
	}
	iss, members, err := parsePayload(parts.payload)
	if err != nil {
		return unverified{}, err
	}
	vi, ok := v.issuers[iss]
	if !ok {
		return unverified{}, fail(ReasonUnknownIssuer, nil)
	}
	if !slices.Contains(vi.cfg.Algorithms, hdr.alg) {
		return unverified{}, fail(ReasonAlgorithmNotAllowed, fmt.Errorf("alg %q", hdr.alg))
	}
	if err := vi.checkType(hdr); err != nil {
		return unverified{}, err
	}
	set := vi.keys.keys()
	if set == nil {
		vi.keys.askRefresh() // traffic shortens the backoff of a failing first load, once per cooldown
		return unverified{}, fail(ReasonKeysUnavailable, nil)
	}
	key, reason := set.lookup(hdr.kid)
	if reason == ReasonUnknownKey {
		vi.keys.askRefresh()
	}
	if reason != ReasonOK {
		return unverified{}, fail(reason, nil)
	}
	if !key.fits(hdr.alg) {
		return unverified{}, fail(ReasonKeyMismatch, fmt.Errorf("key %q does not fit alg %q", key.ID, hdr.alg))
	}
	return unverified{parts: parts, hdr: hdr, members: members, vi: vi, key: key}, nil
}

// checkSignedClaims is what golang-jwt's Parser.ParseWithClaims does with a token, in its order
// (claims decoding, so a malformed token is malformed first; signature; claims validation) and
// with its validator and signing methods (RS* excepted: rsapkcs1.go verifies those with the key's
// prepared modulus), but on the parts prepare already decoded once.
func (vi *verifierIssuer) checkSignedClaims(t unverified) (jwt.RegisteredClaims, error) {
	rc, err := registeredClaims(t.members)
	if err != nil {
		return jwt.RegisteredClaims{}, fail(ReasonMalformedToken, err)
	}
	method, ok := vi.methods[t.hdr.alg]
	if !ok {
		return jwt.RegisteredClaims{}, fail(ReasonKeyMismatch, fmt.Errorf("alg %q has no signing method", t.hdr.alg))
	}
	if err := method.Verify(t.parts.signed, t.parts.signature, t.key.verificationKey(method)); err != nil {
		return jwt.RegisteredClaims{}, fail(ReasonBadSignature, fmt.Errorf("%w: %w", jwt.ErrTokenSignatureInvalid, err))
	}
	if err := vi.validator.Validate(&rc); err != nil {
		err = fmt.Errorf("%w: %w", jwt.ErrTokenInvalidClaims, err)
		return jwt.RegisteredClaims{}, fail(reasonOfJWT(err), err)
	}
	return rc, nil
}

// newClaimsValidator is golang-jwt's validator with the options the issuer demands: iss, aud and
// exp required, iat not in the future, the configured leeway.
func newClaimsValidator(ic config.Issuer, leeway time.Duration, now func() time.Time) *jwt.Validator {
	return jwt.NewValidator(
		jwt.WithIssuer(ic.Issuer),
		jwt.WithAudience(ic.Audiences...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	)
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

// jwsParts are the parts of a compact JWS, each decoded once.
type jwsParts struct {
	header, payload, signature []byte
	signed                     string // header.payload, the JWS signing input
}

// split decodes a compact JWS with exactly three non-empty parts (strict base64url, no padding).
func split(token string) (jwsParts, error) {
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return jwsParts{}, errors.New("not a compact JWS")
	}
	p, sig, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sig, ".") {
		return jwsParts{}, errors.New("not a compact JWS (a JWE or more than three parts)")
	}
	if h == "" || p == "" || sig == "" {
		return jwsParts{}, errors.New("empty part")
	}
	enc := base64.RawURLEncoding.Strict()
	// One buffer for the three decoded parts.
	buf := make([]byte, enc.DecodedLen(len(h))+enc.DecodedLen(len(p))+enc.DecodedLen(len(sig)))
	var parts jwsParts
	var err error
	if parts.header, buf, err = decodePart(enc, buf, h); err != nil {
		return jwsParts{}, fmt.Errorf("header: %w", err)
	}
	if parts.payload, buf, err = decodePart(enc, buf, p); err != nil {
		return jwsParts{}, fmt.Errorf("payload: %w", err)
	}
	if parts.signature, _, err = decodePart(enc, buf, sig); err != nil {
		return jwsParts{}, fmt.Errorf("signature: %w", err)
	}
	parts.signed = token[:len(h)+1+len(p)]
	return parts, nil
}

// decodePart decodes s into the front of buf and returns the decoded bytes (capacity capped, so
// appending to them never touches the rest) and what is left of buf.
func decodePart(enc *base64.Encoding, buf []byte, s string) (part, rest []byte, err error) {
	n, err := enc.Decode(buf, unsafe.Slice(unsafe.StringData(s), len(s)))
	if err != nil {
		return nil, nil, err
	}
	return buf[:n:n], buf[n:], nil
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
		default:
			err = decodableHeaderValue(value)
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

// decodableHeaderValue rejects a header value golang-jwt's parser could not decode into its
// map[string]any header (a number beyond float64). Strings and literals always decode; only other
// values, rare in a header, are decoded to find out.
func decodableHeaderValue(raw json.RawMessage) error {
	switch raw[0] {
	case '"', 't', 'f', 'n':
		return nil
	}
	var v any
	return json.Unmarshal(raw, &v)
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

// registeredClaims decodes the registered claims from the payload's members exactly as golang-jwt's
// parser would decode the whole payload into jwt.RegisteredClaims (encoding/json rules, its
// NumericDate and ClaimStrings types), without decoding the payload again: the scanner already
// rejected duplicate and case-variant names, so each claim is the one member of that exact name.
func registeredClaims(members map[string]json.RawMessage) (jwt.RegisteredClaims, error) {
	var rc jwt.RegisteredClaims
	for _, f := range [...]struct {
		name string
		into *string
	}{{"iss", &rc.Issuer}, {"sub", &rc.Subject}, {"jti", &rc.ID}} {
		if raw, ok := members[f.name]; ok {
			if err := decodeStringClaim(raw, f.into); err != nil {
				return jwt.RegisteredClaims{}, fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	if raw, ok := members["aud"]; ok {
		if err := decodeAudience(raw, &rc.Audience); err != nil {
			return jwt.RegisteredClaims{}, fmt.Errorf("aud: %w", err)
		}
	}
	for _, f := range [...]struct {
		name string
		into **jwt.NumericDate
	}{{"exp", &rc.ExpiresAt}, {"nbf", &rc.NotBefore}, {"iat", &rc.IssuedAt}} {
		if raw, ok := members[f.name]; ok {
			if err := decodeDateClaim(raw, f.into); err != nil {
				return jwt.RegisteredClaims{}, fmt.Errorf("%s: %w", f.name, err)
			}
		}
	}
	return rc, nil
}

// decodeStringClaim is encoding/json's decoding of raw into a string field: null leaves it
// unchanged, a string without escapes is taken as it is (raw is valid UTF-8), anything else goes
// through encoding/json.
func decodeStringClaim(raw json.RawMessage, into *string) error {
	if isSimpleString(raw) {
		*into = string(raw[1 : len(raw)-1])
		return nil
	}
	return json.Unmarshal(raw, into)
}

// decodeAudience is encoding/json's decoding of raw into a jwt.ClaimStrings field.
func decodeAudience(raw json.RawMessage, into *jwt.ClaimStrings) error {
	if isSimpleString(raw) {
		*into = jwt.ClaimStrings{string(raw[1 : len(raw)-1])}
		return nil
	}
	return into.UnmarshalJSON(raw)
}

// decodeDateClaim is encoding/json's decoding of raw into a *jwt.NumericDate field: null leaves
// it nil, anything else is NumericDate's own decoding.
func decodeDateClaim(raw json.RawMessage, into **jwt.NumericDate) error {
	if string(raw) == "null" {
		return nil
	}
	if secs, ok := smallInteger(raw); ok {
		// What NumericDate's decoding gives for a whole number of seconds, which float64 holds exactly.
		*into = jwt.NewNumericDate(time.Unix(secs, 0))
		return nil
	}
	d := new(jwt.NumericDate)
	if err := d.UnmarshalJSON(raw); err != nil {
		return err
	}
	*into = d
	return nil
}

// smallInteger parses raw when it is an integer literal of at most 15 digits (exact in a float64).
func smallInteger(raw json.RawMessage) (int64, bool) {
	digits := raw
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if len(raw) > len(digits) {
		n = -n
	}
	return n, true
}

// isSimpleString reports whether raw is a JSON string literal without escapes.
func isSimpleString(raw json.RawMessage) bool {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	for _, c := range raw[1 : len(raw)-1] {
		if c == '\\' || c == '"' || c < 0x20 {
			return false
		}
	}
	return true
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
