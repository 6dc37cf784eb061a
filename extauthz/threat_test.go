package extauthz

import (
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

const (
	mainIss  = "https://login.example.com"
	otherIss = "https://other-idp.example.com"
	acmeIss  = "https://idp.acme.example"
	hmacIss  = "https://hmac.example.com"
)

var hmacSecret = strings.Repeat("s3cr3t-", 6) // 42 bytes

// threatEnv is a Check server with four issuers: main (RS256, ES256, EdDSA keys), other (its own
// key), acme's own IdP (bound to acme) and an HMAC issuer; plus an attacker's key and URL.
type threatEnv struct {
	s                     *Server
	rs, rs2, es, ed       signer
	other, acmeIdp, evil  signer
	evilHits              *atomic.Int64
	evilURL               string
	rsaPEM                []byte
	smallRS, es384, notIn signer
}

func newThreatEnv(t *testing.T) *threatEnv {
	t.Helper()
	e := &threatEnv{
		rs:      newRSASigner(t, "rs1", 0),
		rs2:     newRSASigner(t, "rs2", 1),
		es:      newECSigner(t, "es1", elliptic.P256(), "ES256"),
		ed:      newEdSigner(t, "ed1"),
		other:   newEdSigner(t, "oth1"),
		acmeIdp: newEdSigner(t, "acme1"),
		evil:    newRSASigner(t, "rs1", 2), // same kid as the real key, different key
		es384:   newECSigner(t, "es384", elliptic.P384(), "ES384"),
	}
	rsaKey(t, 0)
	e.smallRS = signer{kid: "rs-small", alg: "RS256", priv: rsaSmall}
	e.notIn = newEdSigner(t, "not-published")
	pub, err := x509.MarshalPKIXPublicKey(e.rs.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	e.rsaPEM = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})

	// The main JWKS also lists what must never be used: a 1024-bit RSA key, a P-384 key the issuer
	// does not allow, and a symmetric key.
	doc := jwksOf(t, e.rs, e.rs2, e.es, e.ed)
	var set map[string][]map[string]any
	_ = json.Unmarshal(doc, &set)
	small := e.smallRS.jwk(t, true)
	p384 := e.es384.jwk(t, true)
	for _, extra := range []any{small, p384, map[string]any{"kty": "oct", "kid": "oct1", "k": base64.RawURLEncoding.EncodeToString([]byte(hmacSecret))}} {
		b, _ := json.Marshal(extra)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		set["keys"] = append(set["keys"], m)
	}
	doc, _ = json.Marshal(set)

	mainJWKS := newJWKSServer(t, doc)
	otherJWKS := newJWKSServer(t, jwksOf(t, e.other))
	acmeJWKS := newJWKSServer(t, jwksOf(t, e.acmeIdp))
	e.evilHits = new(atomic.Int64)
	evil := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		e.evilHits.Add(1)
		_, _ = w.Write(jwksOf(t, e.evil))
	}))
	t.Cleanup(evil.Close)
	e.evilURL = evil.URL

	acmeIssuer := issuerFor(acmeJWKS, acmeIss)
	acmeIssuer.Tenants = []string{"acme"}
	cfg := authzConfig(
		issuerFor(mainJWKS, mainIss),
		issuerFor(otherJWKS, otherIss),
		acmeIssuer,
		config.Issuer{Issuer: hmacIss, Audiences: []string{audience}, HMACSecret: config.Secret(hmacSecret)},
	)
	cfg.Cookie = "tg_session"
	cfg.Header = "X-Api-Token"
	cfg.RemoveAuthorization = true
	// One client trusts every test server: they share httptest's certificate.
	e.s = startServer(t, cfg, allTenants(), mainJWKS.Client())
	waitReady(t, e.s)
	return e
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// rawToken assembles a token from literal JSON, with a literal signature.
func rawToken(hdr, payload, sig string) string { return b64(hdr) + "." + b64(payload) + "." + sig }

// signRaw signs literal header and payload JSON, so a test controls every byte.
func (s signer) signRaw(t testing.TB, hdr, payload string) string {
	t.Helper()
	input := b64(hdr) + "." + b64(payload)
	sig, err := jwt.GetSigningMethod(s.alg).Sign(input, s.priv)
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func payloadJSON(members ...string) string {
	now := time.Now().Unix()
	base := []string{
		fmt.Sprintf(`"iss":%q`, mainIss), fmt.Sprintf(`"aud":%q`, audience), `"sub":"user-1"`,
		fmt.Sprintf(`"iat":%d`, now), fmt.Sprintf(`"exp":%d`, now+3600),
	}
	return "{" + strings.Join(append(base, members...), ",") + "}"
}

type threatCase struct {
	name   string
	req    func() *authv3.CheckRequest
	status int
	reason Reason
	allow  *tenant.Tenant // set for an allow
}

// TestCheck_RFC8725Threats covers the threat classes of RFC 8725 sections 2 and 3, each with the
// exact status and reason, no tenant header on a denial and the right headers on an allow.
func TestCheck_RFC8725Threats(t *testing.T) {
	e := newThreatEnv(t)
	acmeClaims := claimsFor(mainIss, acme.ID)
	now := time.Now()
	tok := func(s signer, hdr map[string]any, claims map[string]any) func() *authv3.CheckRequest {
		return func() *authv3.CheckRequest { return checkReq("api.example.com", bearer(s.sign(t, hdr, claims)), nil) }
	}
	lit := func(token string) func() *authv3.CheckRequest {
		return func() *authv3.CheckRequest { return checkReq("api.example.com", bearer(token), nil) }
	}
	at := func(host string, s signer, claims map[string]any, ext map[string]string) func() *authv3.CheckRequest {
		return func() *authv3.CheckRequest { return checkReq(host, bearer(s.sign(t, nil, claims)), ext) }
	}
	hs := func(secret []byte, kid string, claims map[string]any) func() *authv3.CheckRequest {
		return func() *authv3.CheckRequest {
			tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims))
			if kid != "" {
				tk.Header["kid"] = kid
			}
			s, err := tk.SignedString(secret)
			if err != nil {
				t.Fatal(err)
			}
			return checkReq("api.example.com", bearer(s), nil)
		}
	}
	noneHdr := `{"alg":"none","typ":"JWT"}`
	goodHdr := `{"alg":"EdDSA","kid":"ed1","typ":"JWT"}`

	cases := []threatCase{
		// Allowed: the baselines every attack below is a variation of.
		{name: "valid RS256 token is allowed", req: tok(e.rs, nil, acmeClaims), status: 200, allow: &acme},
		{name: "valid ES256 token is allowed", req: tok(e.es, nil, acmeClaims), status: 200, allow: &acme},
		{name: "valid EdDSA token is allowed", req: tok(e.ed, nil, acmeClaims), status: 200, allow: &acme},
		{name: "HS256 from the issuer with a configured secret is allowed", req: hs([]byte(hmacSecret), "", claimsFor(hmacIss, globex.ID)), status: 200, allow: &globex},
		{name: "bearer scheme is case-insensitive", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"authorization": "bEaReR " + e.rs.sign(t, nil, acmeClaims)}, nil)
		}, status: 200, allow: &acme},
		{name: "audience list holding ours is allowed", req: tok(e.rs, nil, with(acmeClaims, "aud", []string{"https://else", audience})), status: 200, allow: &acme},
		{name: "typ at+jwt is allowed", req: tok(e.ed, map[string]any{"typ": "at+jwt"}, acmeClaims), status: 200, allow: &acme},
		{name: "typ application/at+jwt is allowed", req: tok(e.ed, map[string]any{"typ": "application/at+jwt"}, acmeClaims), status: 200, allow: &acme},
		{name: "token without typ is allowed by the default policy", req: tok(e.ed, map[string]any{"typ": nil}, acmeClaims), status: 200, allow: &acme},
		{name: "exp within the leeway is allowed", req: tok(e.ed, nil, with(acmeClaims, "exp", now.Add(-10*time.Second).Unix(), "iat", now.Add(-time.Minute).Unix(), "nbf", nil)), status: 200, allow: &acme},
		{name: "own host is allowed", req: at("acme.tenants.example.com", e.ed, acmeClaims, nil), status: 200, allow: &acme},
		{name: "own host in other case with port is allowed", req: at("ACME.Tenants.Example.com:443", e.ed, acmeClaims, nil), status: 200, allow: &acme},
		{name: "route expecting the tenant and its plan is allowed", req: at("api.example.com", e.ed, acmeClaims, map[string]string{ExtTenant: "acme", ExtPlans: "professional, enterprise"}), status: 200, allow: &acme},
		{name: "bound issuer minting for its own tenant is allowed", req: tok(e.acmeIdp, nil, claimsFor(acmeIss, acme.ID)), status: 200, allow: &acme},

		// 2.1 / 3.1 / 3.2: algorithm verification, "none", algorithm confusion.
		{name: "alg none without signature is denied", req: lit(b64(noneHdr) + "." + b64(payloadJSON(`"tenant_id":"`+acme.ID+`"`)) + "."), status: 401, reason: ReasonMalformedToken},
		{name: "alg none with a signature is denied", req: lit(rawToken(noneHdr, payloadJSON(`"tenant_id":"`+acme.ID+`"`), "AAAA")), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "alg NONE in capitals is denied", req: lit(rawToken(`{"alg":"NONE"}`, payloadJSON(`"tenant_id":"`+acme.ID+`"`), "AAAA")), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "HS256 signed with the RSA public key is denied", req: hs(e.rsaPEM, "rs1", acmeClaims), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "HS256 signed with the JWKS's symmetric key is denied", req: hs([]byte(hmacSecret), "oct1", acmeClaims), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "HMAC issuer cannot accept an asymmetric alg", req: tok(e.ed, nil, claimsFor(hmacIss, acme.ID)), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "RS384 not allowed for the issuer is denied", req: tok(signer{kid: "rs1", alg: "RS384", priv: e.rs.priv}, nil, acmeClaims), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "PS256 with an RS256 key is denied", req: tok(signer{kid: "rs1", alg: "PS256", priv: e.rs.priv}, nil, acmeClaims), status: 401, reason: ReasonAlgorithmNotAllowed},
		{name: "ES256 token naming the RSA key is denied", req: tok(signer{kid: "rs1", alg: "ES256", priv: e.es.priv}, nil, acmeClaims), status: 401, reason: ReasonKeyMismatch},
		{name: "EdDSA token naming the EC key is denied", req: tok(signer{kid: "es1", alg: "EdDSA", priv: e.ed.priv}, nil, acmeClaims), status: 401, reason: ReasonKeyMismatch},

		// 2.5 / 3.4 / 3.5: keys and signatures.
		{name: "signature by another key under a known kid is denied", req: tok(e.evil, nil, acmeClaims), status: 401, reason: ReasonBadSignature},
		{name: "RSA key under 2048 bits is never loaded", req: tok(e.smallRS, nil, acmeClaims), status: 401, reason: ReasonUnknownKey},
		{name: "P-384 key (invalid curve for ES256) is never loaded", req: tok(signer{kid: "es384", alg: "ES256", priv: e.es.priv}, nil, acmeClaims), status: 401, reason: ReasonUnknownKey},
		{name: "unpublished key is denied", req: tok(e.notIn, nil, acmeClaims), status: 401, reason: ReasonUnknownKey},

		// 2.4 / 3.10: key and kid injection, jku, x5u, embedded jwk.
		{name: "kid path traversal is an unknown key", req: tok(signer{kid: "../../../../dev/null", alg: "EdDSA", priv: e.ed.priv}, nil, acmeClaims), status: 401, reason: ReasonUnknownKey},
		{name: "kid SQL injection is an unknown key", req: tok(signer{kid: "x' OR '1'='1", alg: "EdDSA", priv: e.ed.priv}, nil, acmeClaims), status: 401, reason: ReasonUnknownKey},
		{name: "kid with a control character is malformed", req: tok(signer{kid: "ed1\n", alg: "EdDSA", priv: e.ed.priv}, nil, acmeClaims), status: 401, reason: ReasonMalformedToken},
		{name: "missing kid where the issuer has several keys is denied", req: tok(signer{alg: "EdDSA", priv: e.ed.priv}, nil, acmeClaims), status: 401, reason: ReasonKeyIDRequired},
		{name: "jku header is denied and never fetched", req: tok(e.evil, map[string]any{"jku": "URL"}, acmeClaims), status: 401, reason: ReasonForbiddenHeader},
		{name: "x5u header is denied and never fetched", req: tok(e.evil, map[string]any{"x5u": "URL"}, acmeClaims), status: 401, reason: ReasonForbiddenHeader},
		{name: "embedded jwk header is denied", req: tok(e.evil, map[string]any{"jwk": e.evil.jwk(t, true)}, acmeClaims), status: 401, reason: ReasonForbiddenHeader},
		{name: "x5c header is denied", req: tok(e.evil, map[string]any{"x5c": []string{"MIIB"}}, acmeClaims), status: 401, reason: ReasonForbiddenHeader},
		{name: "crit header is denied", req: tok(e.ed, map[string]any{"crit": []string{"exp"}, "exp": 1}, acmeClaims), status: 401, reason: ReasonForbiddenHeader},
		{name: "b64 header is denied", req: tok(e.ed, map[string]any{"b64": false}, acmeClaims), status: 401, reason: ReasonForbiddenHeader},

		// 2.8 / 3.11: explicit typing and cross-JWT confusion.
		{name: "typ of another kind of JWT is denied", req: tok(e.ed, map[string]any{"typ": "secevent+jwt"}, acmeClaims), status: 401, reason: ReasonBadType},
		{name: "nested token (cty) is denied", req: tok(e.ed, map[string]any{"cty": "JWT"}, acmeClaims), status: 401, reason: ReasonBadType},
		{name: "typ that is not a string is malformed", req: tok(e.ed, map[string]any{"typ": 7}, acmeClaims), status: 401, reason: ReasonMalformedToken},

		// Time claims.
		{name: "expired token is denied", req: tok(e.ed, nil, with(acmeClaims, "exp", now.Add(-2*time.Minute).Unix(), "iat", now.Add(-time.Hour).Unix(), "nbf", nil)), status: 401, reason: ReasonExpired},
		{name: "token without exp is denied", req: tok(e.ed, nil, with(acmeClaims, "exp", nil)), status: 401, reason: ReasonBadClaims},
		{name: "exp that is a string is malformed", req: tok(e.ed, nil, with(acmeClaims, "exp", fmt.Sprint(now.Add(time.Hour).Unix()))), status: 401, reason: ReasonMalformedToken},
		{name: "nbf in the future is denied", req: tok(e.ed, nil, with(acmeClaims, "nbf", now.Add(5*time.Minute).Unix())), status: 401, reason: ReasonNotYetValid},
		{name: "iat in the future is denied", req: tok(e.ed, nil, with(acmeClaims, "iat", now.Add(5*time.Minute).Unix(), "nbf", nil)), status: 401, reason: ReasonIssuedInFuture},
		{name: "lifetime over the maximum is denied", req: tok(e.ed, nil, with(acmeClaims, "exp", now.Add(48*time.Hour).Unix())), status: 401, reason: ReasonLifetimeTooLong},
		{name: "far exp without iat is denied", req: tok(e.ed, nil, with(acmeClaims, "exp", now.Add(30*24*time.Hour).Unix(), "iat", nil)), status: 401, reason: ReasonLifetimeTooLong},

		// 2.7 / 3.8 / 3.9: issuer and audience substitution.
		{name: "unknown issuer is denied", req: tok(e.evil, nil, with(acmeClaims, "iss", "https://evil.example")), status: 401, reason: ReasonUnknownIssuer},
		{name: "token without iss is denied", req: tok(e.ed, nil, with(acmeClaims, "iss", nil)), status: 401, reason: ReasonUnknownIssuer},
		{name: "another issuer's key claiming our issuer is denied", req: tok(e.other, nil, acmeClaims), status: 401, reason: ReasonUnknownKey},
		{name: "our key claiming another issuer is denied", req: tok(e.ed, nil, with(acmeClaims, "iss", otherIss)), status: 401, reason: ReasonUnknownKey},
		{name: "issuer with trailing slash is another issuer", req: tok(e.ed, nil, with(acmeClaims, "iss", mainIss+"/")), status: 401, reason: ReasonUnknownIssuer},
		{name: "token for another audience is denied", req: tok(e.ed, nil, with(acmeClaims, "aud", "https://other-api.example.com")), status: 401, reason: ReasonBadAudience},
		{name: "token without aud is denied", req: tok(e.ed, nil, with(acmeClaims, "aud", nil)), status: 401, reason: ReasonBadClaims},

		// Cross-tenant substitution: issuer binding, host binding, route binding.
		{name: "bound issuer minting for another tenant is denied", req: tok(e.acmeIdp, nil, claimsFor(acmeIss, globex.ID)), status: 403, reason: ReasonTenantDenied},
		{name: "token for acme at globex's host is denied", req: at("globex.tenants.example.com", e.ed, acmeClaims, nil), status: 403, reason: ReasonTenantDenied},
		{name: "token for acme at a deeper host is denied", req: at("evil.acme.tenants.example.com", e.ed, acmeClaims, nil), status: 403, reason: ReasonTenantDenied},
		{name: "route for globex denies acme", req: at("api.example.com", e.ed, acmeClaims, map[string]string{ExtTenant: "globex"}), status: 403, reason: ReasonTenantDenied},
		{name: "route for other plans denies acme", req: at("api.example.com", e.ed, acmeClaims, map[string]string{ExtPlans: "free,starter"}), status: 403, reason: ReasonPlanNotAllowed},
		{name: "suspended tenant is denied as suspended", req: tok(e.ed, nil, claimsFor(mainIss, frozen.ID)), status: 403, reason: ReasonTenantSuspended},
		{name: "deleted tenant is denied", req: tok(e.ed, nil, claimsFor(mainIss, gone.ID)), status: 403, reason: ReasonTenantDenied},
		{name: "pending tenant is denied", req: tok(e.ed, nil, claimsFor(mainIss, pending.ID)), status: 403, reason: ReasonTenantDenied},
		{name: "unknown tenant is denied", req: tok(e.ed, nil, claimsFor(mainIss, never)), status: 403, reason: ReasonTenantDenied},

		// Malformed and oversized tokens.
		{name: "no credential is denied", req: func() *authv3.CheckRequest { return checkReq("api.example.com", nil, nil) }, status: 401, reason: ReasonMissingCredential},
		{name: "empty bearer is denied", req: lit(""), status: 401, reason: ReasonMissingCredential},
		{name: "basic credentials are denied", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, nil)
		}, status: 401, reason: ReasonMalformedToken},
		{name: "one segment is malformed", req: lit("abc"), status: 401, reason: ReasonMalformedToken},
		{name: "four segments are malformed", req: lit(e.ed.sign(t, nil, acmeClaims) + ".AAAA"), status: 401, reason: ReasonMalformedToken},
		{name: "JWE (five segments) is malformed", req: lit(b64(`{"alg":"RSA-OAEP","enc":"A256GCM"}`) + ".AAAA.AAAA.AAAA.AAAA"), status: 401, reason: ReasonMalformedToken},
		{name: "padded base64 is malformed", req: lit(base64.URLEncoding.EncodeToString([]byte(goodHdr+" ")) + "." + b64(payloadJSON()) + ".AAAA"), status: 401, reason: ReasonMalformedToken},
		{name: "non-canonical base64 is malformed", req: lit(b64(goodHdr) + "." + b64(payloadJSON()) + ".AB"), status: 401, reason: ReasonMalformedToken},
		{name: "payload that is not JSON is malformed", req: lit(e.ed.signRaw(t, goodHdr, "not json")), status: 401, reason: ReasonMalformedToken},
		{name: "payload that is an array is malformed", req: lit(e.ed.signRaw(t, goodHdr, `["iss"]`)), status: 401, reason: ReasonMalformedToken},
		{name: "payload with trailing data is malformed", req: lit(e.ed.signRaw(t, goodHdr, payloadJSON(`"tenant_id":"`+acme.ID+`"`)+"{}")), status: 401, reason: ReasonMalformedToken},
		{name: "header without alg is malformed", req: lit(e.ed.signRaw(t, `{"kid":"ed1"}`, payloadJSON(`"tenant_id":"`+acme.ID+`"`))), status: 401, reason: ReasonMalformedToken},
		{name: "token with a space is malformed", req: lit("abc def.ghi.jkl"), status: 401, reason: ReasonMalformedToken},
		{name: "oversized token is denied before parsing", req: lit(strings.Repeat("A", 9000)), status: 401, reason: ReasonTokenTooLarge},
		{name: "oversized header_map credential is denied", req: func() *authv3.CheckRequest {
			return rawReq("api.example.com", [2]string{"authorization", "Bearer " + strings.Repeat("A", 9000)})
		}, status: 401, reason: ReasonTokenTooLarge},

		// 3.12: JSON ambiguity.
		{name: "duplicate tenant claim is denied", req: lit(e.ed.signRaw(t, goodHdr, payloadJSON(`"tenant_id":"`+acme.ID+`"`, `"tenant_id":"`+globex.ID+`"`))), status: 401, reason: ReasonAmbiguousJSON},
		{name: "case-variant tenant claim is denied", req: lit(e.ed.signRaw(t, goodHdr, payloadJSON(`"tenant_id":"`+acme.ID+`"`, `"Tenant_ID":"`+globex.ID+`"`))), status: 401, reason: ReasonAmbiguousJSON},
		{name: "case-variant registered claim is denied", req: lit(e.ed.signRaw(t, goodHdr, `{"ISS":"`+mainIss+`","aud":"`+audience+`","exp":`+fmt.Sprint(now.Add(time.Hour).Unix())+`,"tenant_id":"`+acme.ID+`"}`)), status: 401, reason: ReasonAmbiguousJSON},
		{name: "unicode-folded claim name is denied", req: lit(e.ed.signRaw(t, goodHdr, payloadJSON(`"tenant_id":"`+acme.ID+`"`, `"ſub":"admin"`))), status: 401, reason: ReasonAmbiguousJSON},
		{name: "duplicate alg in the header is denied", req: lit(e.ed.signRaw(t, `{"alg":"none","alg":"EdDSA","kid":"ed1"}`, payloadJSON(`"tenant_id":"`+acme.ID+`"`))), status: 401, reason: ReasonAmbiguousJSON},
		{name: "tenant claim that is an array is denied", req: tok(e.ed, nil, with(acmeClaims, "tenant_id", []string{acme.ID})), status: 401, reason: ReasonBadTenantClaim},
		{name: "tenant claim that is a number is denied", req: tok(e.ed, nil, with(acmeClaims, "tenant_id", 42)), status: 401, reason: ReasonBadTenantClaim},
		{name: "tenant claim with a control character is denied", req: tok(e.ed, nil, with(acmeClaims, "tenant_id", acme.ID+"\x00")), status: 401, reason: ReasonBadTenantClaim},
		{name: "tenant claim of the wrong shape is denied", req: tok(e.ed, nil, with(acmeClaims, "tenant_id", strings.ToUpper(acme.ID))), status: 401, reason: ReasonBadTenantClaim},
		{name: "token without a tenant claim is denied", req: tok(e.ed, nil, with(acmeClaims, "tenant_id", nil)), status: 401, reason: ReasonBadTenantClaim},

		// Header spoofing and credential ambiguity.
		{name: "two authorization lines are denied", req: func() *authv3.CheckRequest {
			return rawReq("api.example.com", [2]string{"authorization", "Bearer " + e.ed.sign(t, nil, acmeClaims)}, [2]string{"authorization", "Bearer " + e.ed.sign(t, nil, claimsFor(mainIss, globex.ID))})
		}, status: 401, reason: ReasonMultipleCredentials},
		{name: "two joined bearer tokens are denied", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"authorization": "Bearer " + e.ed.sign(t, nil, acmeClaims) + ",Bearer " + e.ed.sign(t, nil, claimsFor(mainIss, globex.ID))}, nil)
		}, status: 401, reason: ReasonMultipleCredentials},
		{name: "authorization plus cookie is denied", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"authorization": "Bearer " + e.ed.sign(t, nil, acmeClaims), "cookie": "a=b; tg_session=" + e.ed.sign(t, nil, claimsFor(mainIss, globex.ID))}, nil)
		}, status: 401, reason: ReasonMultipleCredentials},
		{name: "authorization plus credential header is denied", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"authorization": "Bearer " + e.ed.sign(t, nil, acmeClaims), "x-api-token": e.ed.sign(t, nil, acmeClaims)}, nil)
		}, status: 401, reason: ReasonMultipleCredentials},
		{name: "two session cookies are denied", req: func() *authv3.CheckRequest {
			tk := e.ed.sign(t, nil, acmeClaims)
			return checkReq("api.example.com", map[string]string{"cookie": "tg_session=" + tk + "; tg_session=" + tk}, nil)
		}, status: 401, reason: ReasonMultipleCredentials},
		{name: "headers and header_map that disagree are denied", req: func() *authv3.CheckRequest {
			r := rawReq("api.example.com", [2]string{"authorization", "Bearer " + e.ed.sign(t, nil, acmeClaims)})
			r.Attributes.Request.Http.Headers = bearer(e.ed.sign(t, nil, claimsFor(mainIss, globex.ID)))
			return r
		}, status: 401, reason: ReasonMultipleCredentials},
		{name: "session cookie alone is allowed", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"cookie": "theme=dark; tg_session=" + e.ed.sign(t, nil, acmeClaims)}, nil)
		}, status: 200, allow: &acme},
		{name: "credential header alone is allowed", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"x-api-token": e.ed.sign(t, nil, acmeClaims)}, nil)
		}, status: 200, allow: &acme},
		{name: "header_map credential is allowed", req: func() *authv3.CheckRequest {
			return rawReq("api.example.com", [2]string{"Authorization", "Bearer " + e.ed.sign(t, nil, acmeClaims)})
		}, status: 200, allow: &acme},
		{name: "spoofed tenant headers on a denial stamp nothing", req: func() *authv3.CheckRequest {
			return checkReq("api.example.com", map[string]string{"x-tenant-id": acme.ID, "x-tenant-slug": "acme", "authorization": "Bearer " + e.evil.sign(t, nil, acmeClaims)}, nil)
		}, status: 401, reason: ReasonBadSignature},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req()
			before := reasonTotal(e.s, tc.reason)
			resp := check(t, e.s, req)
			token := strings.TrimPrefix(req.GetAttributes().GetRequest().GetHttp().GetHeaders()["authorization"], "Bearer ")
			if tc.allow != nil {
				assertAllowed(t, resp, *tc.allow, "user-1")
				return
			}
			assertDenied(t, resp, tc.status, token)
			if got := reasonTotal(e.s, tc.reason) - before; got != 1 {
				t.Fatalf("reason %s counted %v times, want 1", tc.reason, got)
			}
		})
	}
	if n := e.evilHits.Load(); n != 0 {
		t.Fatalf("a URL from a token was fetched %d times", n)
	}
}

// TestCheck_SpoofedTenantHeadersAreReplaced: client-sent stamped headers are overwritten (not in
// headers_to_remove), any other x-tenant-* header is removed, and so is the credential.
func TestCheck_SpoofedTenantHeadersAreReplaced(t *testing.T) {
	e := newThreatEnv(t)
	req := rawReq("acme.tenants.example.com",
		[2]string{"authorization", "Bearer " + e.ed.sign(t, nil, claimsFor(mainIss, acme.ID))},
		[2]string{"x-tenant-id", globex.ID},
		[2]string{"X-Tenant-Slug", "globex"},
		[2]string{"x-tenant-role", "admin"},
		[2]string{"X-Tenant-Debug", "1"},
	)
	ok := assertAllowed(t, check(t, e.s, req), acme, "user-1")
	want := []string{"x-tenant-role", "x-tenant-debug", "authorization", "x-api-token"}
	for _, w := range want {
		found := false
		for _, r := range ok.GetHeadersToRemove() {
			found = found || r == w
		}
		if !found {
			t.Errorf("headers_to_remove %v lacks %s", ok.GetHeadersToRemove(), w)
		}
	}
	if len(ok.GetHeadersToRemove()) != len(want) {
		t.Errorf("headers_to_remove = %v, want exactly %v", ok.GetHeadersToRemove(), want)
	}
}

// TestCheck_TenantDenialsAreIndistinguishable: deleted, pending, unknown and bound-elsewhere
// tenants get byte-identical responses (no oracle).
func TestCheck_TenantDenialsAreIndistinguishable(t *testing.T) {
	e := newThreatEnv(t)
	var first *authv3.CheckResponse
	for _, req := range []*authv3.CheckRequest{
		checkReq("api.example.com", bearer(e.ed.sign(t, nil, claimsFor(mainIss, gone.ID))), nil),
		checkReq("api.example.com", bearer(e.ed.sign(t, nil, claimsFor(mainIss, pending.ID))), nil),
		checkReq("api.example.com", bearer(e.ed.sign(t, nil, claimsFor(mainIss, never))), nil),
		checkReq("api.example.com", bearer(e.acmeIdp.sign(t, nil, claimsFor(acmeIss, globex.ID))), nil),
		checkReq("globex.tenants.example.com", bearer(e.ed.sign(t, nil, claimsFor(mainIss, acme.ID))), nil),
	} {
		resp := check(t, e.s, req)
		if first == nil {
			// Identical to a tenant denial, not merely to each other.
			assertDenied(t, resp, http.StatusForbidden, "")
			first = resp
			continue
		}
		if !proto.Equal(first, resp) {
			t.Fatalf("tenant denials differ:\n%v\n%v", first, resp)
		}
	}
}
