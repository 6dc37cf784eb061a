package extauthz

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/internal/config"
)

// parityVerifier is a verifier with a fixed clock and a local JWKS, loaded synchronously, holding
// an Ed25519 key (fast to sign with, for the fuzz target) and an RSA key without alg, which every
// RS and PS algorithm may use. It returns a signer for each algorithm.
func parityVerifier(t testing.TB) (*Verifier, []signer) {
	t.Helper()
	ed := signer{kid: "par-ed", alg: "EdDSA", priv: ed25519.NewKeyFromSeed([]byte("tenantgate-parity-seed-32-bytes!"))}
	signers := []signer{ed}
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256"} {
		signers = append(signers, signer{kid: "par-rs", alg: alg, priv: rsaKey(t, 1)})
	}
	doc, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{ed.jwk(t, true), signers[1].jwk(t, false)}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().Authz
	cfg.Issuers = []config.Issuer{{Issuer: mainIss, Audiences: []string{audience}, JWKSFile: path,
		Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "EdDSA"}}}
	v, err := NewVerifier(cfg, WithRegisterer(prometheus.NewRegistry()), WithClock(func() time.Time { return fuzzNow }))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.order[0].keys.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return v, signers
}

// verifyWithJWTParser is the reference the miss path must agree with: the same checks before and
// after, and in between golang-jwt's whole Parser.ParseWithClaims with its strict options, which
// decodes the token again by itself.
func verifyWithJWTParser(v *Verifier, token string, now time.Time) (Claims, Reason) {
	t, err := v.prepare(token)
	if err != nil {
		return Claims{}, ReasonOf(err)
	}
	ic := t.vi.cfg
	parser := jwt.NewParser(
		jwt.WithValidMethods(ic.Algorithms),
		jwt.WithIssuer(ic.Issuer),
		jwt.WithAudience(ic.Audiences...),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithStrictDecoding(),
	)
	var rc jwt.RegisteredClaims
	if _, err := parser.ParseWithClaims(token, &rc, func(*jwt.Token) (any, error) { return t.key.public, nil }); err != nil {
		return Claims{}, reasonOfJWT(err)
	}
	c, err := v.claimsOf(t.vi, &rc, t.members, now)
	if err != nil {
		return Claims{}, ReasonOf(err)
	}
	return c, ReasonOK
}

// checkParity fails t when the miss path and the golang-jwt parser disagree on token.
func checkParity(t *testing.T, v *Verifier, token string) Reason {
	t.Helper()
	got, _, err := v.verify(token, fuzzNow)
	want, wantReason := verifyWithJWTParser(v, token, fuzzNow)
	if ReasonOf(err) != wantReason {
		t.Fatalf("reason %s, golang-jwt's parser gives %s (err %v)", ReasonOf(err), wantReason, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("claims\n%+v\ngolang-jwt's parser gives\n%+v", got, want)
	}
	return wantReason
}

// TestVerify_AgreesWithJWTParser: decoding the registered claims from the scanned members, then
// golang-jwt's signing method and validator, decides every token exactly as golang-jwt's own
// parser does (same reason, same claims), including the odd JSON a parser might read differently.
func TestVerify_AgreesWithJWTParser(t *testing.T) {
	v, signers := parityVerifier(t)
	iat, exp := fuzzNow.Add(-time.Minute).Unix(), fuzzNow.Add(time.Hour).Unix()
	payload := func(replace map[string]string) string {
		members := map[string]string{
			"iss": fmt.Sprintf("%q", mainIss), "aud": fmt.Sprintf("%q", audience), "sub": `"user-1"`,
			"tenant_id": fmt.Sprintf("%q", acme.ID), "iat": fmt.Sprint(iat), "exp": fmt.Sprint(exp),
		}
		for k, val := range replace {
			if val == "" {
				delete(members, k)
				continue
			}
			members[k] = val
		}
		var parts []string
		for _, k := range []string{"iss", "aud", "sub", "tenant_id", "iat", "exp", "nbf", "jti", "scope", "extra"} {
			if val, ok := members[k]; ok {
				parts = append(parts, fmt.Sprintf("%q:%s", k, val))
			}
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	hdr := func(s signer, extra string) string {
		return fmt.Sprintf(`{"alg":%q,"kid":%q%s}`, s.alg, s.kid, extra)
	}
	for _, tc := range []struct {
		name    string
		hdr     string // extra header members, after alg and kid
		replace map[string]string
		corrupt bool // flip a bit of the signature
		want    Reason
	}{
		{name: "valid", want: ReasonOK},
		{name: "sub escaped", replace: map[string]string{"sub": `"us\u0065r-1"`}, want: ReasonOK},
		{name: "sub null", replace: map[string]string{"sub": `null`}, want: ReasonOK},
		{name: "sub number", replace: map[string]string{"sub": `42`}, want: ReasonMalformedToken},
		{name: "sub object", replace: map[string]string{"sub": `{"a":1}`}, want: ReasonMalformedToken},
		{name: "sub missing", replace: map[string]string{"sub": ""}, want: ReasonOK},
		{name: "jti string", replace: map[string]string{"jti": `"j-1"`}, want: ReasonOK},
		{name: "jti null", replace: map[string]string{"jti": `null`}, want: ReasonOK},
		{name: "jti array", replace: map[string]string{"jti": `["j"]`}, want: ReasonMalformedToken},
		{name: "iss escaped", replace: map[string]string{"iss": fmt.Sprintf("%q", mainIss)[:1] + strings.ReplaceAll(mainIss, "/", `\/`) + `"`}, want: ReasonOK},
		{name: "aud array", replace: map[string]string{"aud": fmt.Sprintf(`["other",%q]`, audience)}, want: ReasonOK},
		{name: "aud array of one", replace: map[string]string{"aud": fmt.Sprintf(`[%q]`, audience)}, want: ReasonOK},
		{name: "aud escaped", replace: map[string]string{"aud": strings.Replace(fmt.Sprintf("%q", audience), "a", `\u0061`, 1)}, want: ReasonOK},
		{name: "aud wrong", replace: map[string]string{"aud": `"https://other.example.com"`}, want: ReasonBadAudience},
		{name: "aud empty array", replace: map[string]string{"aud": `[]`}, want: ReasonBadClaims},
		{name: "aud null", replace: map[string]string{"aud": `null`}, want: ReasonBadClaims},
		{name: "aud empty string", replace: map[string]string{"aud": `""`}, want: ReasonBadClaims},
		{name: "aud number", replace: map[string]string{"aud": `7`}, want: ReasonMalformedToken},
		{name: "aud array with a number", replace: map[string]string{"aud": fmt.Sprintf(`[%q,7]`, audience)}, want: ReasonMalformedToken},
		{name: "aud missing", replace: map[string]string{"aud": ""}, want: ReasonBadClaims},
		{name: "exp fractional", replace: map[string]string{"exp": fmt.Sprintf("%d.75", exp)}, want: ReasonOK},
		{name: "exp exponent", replace: map[string]string{"exp": fmt.Sprintf("%de0", exp)}, want: ReasonOK},
		{name: "exp exponent form of a whole second", replace: map[string]string{"exp": fmt.Sprintf("%g", float64(exp))}, want: ReasonOK},
		{name: "exp past", replace: map[string]string{"exp": fmt.Sprint(fuzzNow.Add(-time.Hour).Unix())}, want: ReasonExpired},
		{name: "exp negative", replace: map[string]string{"exp": "-5"}, want: ReasonExpired},
		{name: "exp minus zero", replace: map[string]string{"exp": "-0"}, want: ReasonExpired},
		{name: "exp overflows float64", replace: map[string]string{"exp": "1e400"}, want: ReasonMalformedToken},
		{name: "exp of sixteen digits", replace: map[string]string{"exp": "1000000000000000"}, want: ReasonLifetimeTooLong},
		{name: "exp of fifteen digits", replace: map[string]string{"exp": "100000000000000"}, want: ReasonLifetimeTooLong},
		{name: "exp missing", replace: map[string]string{"exp": ""}, want: ReasonBadClaims},
		{name: "iat in the future", replace: map[string]string{"iat": fmt.Sprint(fuzzNow.Add(time.Hour).Unix())}, want: ReasonIssuedInFuture},
		{name: "iat fractional", replace: map[string]string{"iat": fmt.Sprintf("%d.5", iat)}, want: ReasonOK},
		{name: "nbf in the future", replace: map[string]string{"nbf": fmt.Sprint(fuzzNow.Add(time.Hour).Unix())}, want: ReasonNotYetValid},
		{name: "nbf past", replace: map[string]string{"nbf": fmt.Sprint(iat)}, want: ReasonOK},
		{name: "unknown member of any shape", replace: map[string]string{"extra": `{"a":[1e400,null,"x"]}`}, want: ReasonOK},
		{name: "scope", replace: map[string]string{"scope": `"a b"`}, want: ReasonOK},
		{name: "header member beyond float64", hdr: `,"x":1e400`, want: ReasonMalformedToken},
		{name: "header member nested beyond float64", hdr: `,"x":{"y":[-1e999]}`, want: ReasonMalformedToken},
		{name: "header member number", hdr: `,"x":12.5`, want: ReasonOK},
		{name: "header member object", hdr: `,"x":{"y":[1,true,null]}`, want: ReasonOK},
		{name: "bad signature", corrupt: true, want: ReasonBadSignature},
		{name: "bad signature beats expiry", replace: map[string]string{"exp": fmt.Sprint(fuzzNow.Add(-time.Hour).Unix())}, corrupt: true, want: ReasonBadSignature},
		{name: "malformed claim beats bad signature", replace: map[string]string{"sub": `42`}, corrupt: true, want: ReasonMalformedToken},
	} {
		for _, s := range signers {
			t.Run(tc.name+"/"+s.alg, func(t *testing.T) {
				token := s.signRaw(t, hdr(s, tc.hdr), payload(tc.replace))
				if tc.corrupt {
					token = corruptSignature(token)
				}
				if got := checkParity(t, v, token); got != tc.want {
					t.Fatalf("reason %s, want %s", got, tc.want)
				}
			})
		}
	}
}

// corruptSignature changes the first character of the token's signature to another base64url
// character (the first one carries six whole bits, so the decoded signature changes).
func corruptSignature(token string) string {
	i := strings.LastIndexByte(token, '.') + 1
	c := byte('A')
	if token[i] == 'A' {
		c = 'B'
	}
	return token[:i] + string(c) + token[i+1:]
}

// FuzzVerifyAgreesWithJWTParser: for any header members and payload, signed or not, the miss path
// and golang-jwt's own parser agree on the reason and the claims.
func FuzzVerifyAgreesWithJWTParser(f *testing.F) {
	iat, exp := fuzzNow.Add(-time.Minute).Unix(), fuzzNow.Add(time.Hour).Unix()
	base := fmt.Sprintf(`"iss":%q,"aud":%q,"sub":"user-1","tenant_id":%q,"iat":%d`, mainIss, audience, acme.ID, iat)
	f.Add("", fmt.Sprintf(`{%s,"exp":%d}`, base, exp), false)
	f.Add(`,"typ":"JWT"`, fmt.Sprintf(`{%s,"exp":%d.5,"nbf":%d}`, base, exp, iat), false)
	f.Add(`,"x":1e400`, fmt.Sprintf(`{%s,"exp":%d}`, base, exp), false)
	f.Add("", fmt.Sprintf(`{%s,"exp":%d,"aud":["a",%q]}`, base[strings.Index(base, `"sub"`):]+`,"iss":"`+mainIss+`"`, exp, audience), false)
	f.Add("", fmt.Sprintf(`{%s,"exp":1e400}`, base), false)
	f.Add("", fmt.Sprintf(`{%s,"exp":%d,"jti":null,"sub":null}`, base[:strings.Index(base, `,"sub"`)]+`,"tenant_id":"`+acme.ID+`","iat":0`, exp), false)
	f.Add("", fmt.Sprintf(`{%s,"exp":%d}`, base, exp), true)
	v, signers := parityVerifier(f)
	ed := signers[0]
	f.Fuzz(func(t *testing.T, extraHeader, payload string, corrupt bool) {
		token := ed.signRaw(t, fmt.Sprintf(`{"alg":"EdDSA","kid":%q%s}`, ed.kid, extraHeader), payload)
		if corrupt {
			token = corruptSignature(token)
		}
		checkParity(t, v, token)
	})
}
