package extauthz

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// minRSABits is the smallest RSA modulus a key may have (RFC 8725 section 3.5 and NIST SP 800-57).
const minRSABits = 2048

// Key is one verification key, bound to the issuer it came from and, when its JWK names one, to one
// algorithm. A refresh that no longer lists the key revokes it; cached verdicts made with it end.
type Key struct {
	ID     string // kid; may be empty when the issuer has exactly one key
	Alg    string // the JWK's alg, or "" when any allowed algorithm of its type fits
	Issuer string
	public any // *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey or []byte (HMAC)
	// pkcs1 is an RSA key prepared once for RS256/RS384/RS512; nil for other keys and for RSA
	// keys crypto/rsa could not verify with either (those then verify no RS token).
	pkcs1 *rsaPublicKey

	revoked atomic.Bool
}

// verificationKey is what method verifies with: the prepared RSA key for this package's RS
// methods, the public key itself for golang-jwt's.
func (k *Key) verificationKey(method jwt.SigningMethod) any {
	if _, ok := method.(*rsaPKCS1v15Method); ok {
		return k.pkcs1
	}
	return k.public
}

// Revoked reports whether a refresh removed the key.
func (k *Key) Revoked() bool { return k.revoked.Load() }

// fits reports whether the key may verify a token signed with alg: the JWK's own alg, when set,
// must equal it, and the key's type and curve must be the algorithm's.
func (k *Key) fits(alg string) bool {
	if k.Alg != "" && k.Alg != alg {
		return false
	}
	switch pub := k.public.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve == elliptic.P256()
		case "ES384":
			return pub.Curve == elliptic.P384()
		case "ES512":
			return pub.Curve == elliptic.P521()
		}
		return false
	case ed25519.PublicKey:
		return alg == "EdDSA"
	case []byte:
		return strings.HasPrefix(alg, "HS")
	}
	return false
}

// sameMaterial reports whether two keys are the same key with the same binding.
func (k *Key) sameMaterial(o *Key) bool {
	if k.ID != o.ID || k.Alg != o.Alg || k.Issuer != o.Issuer {
		return false
	}
	type equaler interface{ Equal(x crypto.PublicKey) bool }
	if a, ok := k.public.(equaler); ok {
		return a.Equal(o.public)
	}
	a, aok := k.public.([]byte)
	b, bok := o.public.([]byte)
	return aok && bok && bytes.Equal(a, b)
}

// keySet is one issuer's keys at one point in time. Immutable once published.
type keySet struct {
	byID map[string]*Key
	all  []*Key
}

// lookup finds the key for a token's kid. A token without kid is accepted only when the issuer has
// exactly one key (RFC 8725 section 3.10: no guessing among several).
func (s *keySet) lookup(kid string) (*Key, Reason) {
	if kid == "" {
		if len(s.all) == 1 {
			return s.all[0], ReasonOK
		}
		return nil, ReasonKeyIDRequired
	}
	if k, ok := s.byID[kid]; ok {
		return k, ReasonOK
	}
	return nil, ReasonUnknownKey
}

func newKeySet(keys []*Key) *keySet {
	s := &keySet{byID: make(map[string]*Key, len(keys)), all: keys}
	for _, k := range keys {
		if k.ID != "" {
			s.byID[k.ID] = k
		}
	}
	return s
}

// parseJWKS turns a JWKS document into the issuer's keys. Only public signature keys of the
// allowed algorithms are kept: symmetric ("oct") and private keys from a JWKS are never used,
// x5u is never fetched, RSA keys under 2048 bits and duplicate kids are dropped. skipped counts
// what was left out; a set with no usable key is an error, so the caller keeps its last good keys.
func parseJWKS(data []byte, issuer string, algs []string) (keys []*Key, skipped int, err error) {
	var doc jwkset.JWKSMarshal
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, 0, fmt.Errorf("decode JWKS: %w", err)
	}
	if doc.Keys == nil {
		return nil, 0, errors.New(`decode JWKS: no "keys" member`)
	}
	seen := map[string]int{}
	for _, m := range doc.Keys {
		seen[m.KID]++
	}
	for _, m := range doc.Keys {
		k, ok := publicKeyOf(m, issuer, algs)
		if !ok || seen[m.KID] > 1 || (m.KID == "" && len(doc.Keys) > 1) {
			skipped++
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, skipped, fmt.Errorf("JWKS holds no usable key (%d skipped)", skipped)
	}
	return keys, skipped, nil
}

func publicKeyOf(m jwkset.JWKMarshal, issuer string, algs []string) (*Key, bool) {
	if m.KTY == jwkset.KtyOct || m.D != "" || m.P != "" || m.Q != "" || m.K != "" {
		return nil, false // symmetric or private material has no place in a JWKS
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return nil, false
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return nil, false
	}
	alg := string(m.ALG)
	if alg != "" && !slices.Contains(algs, alg) {
		return nil, false
	}
	// Certificates and their URLs play no part: the key material itself is what the JWKS vouches for.
	m.X5U, m.X5C, m.X5T, m.X5TS256 = "", nil, "", ""
	jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, false
	}
	k := &Key{ID: m.KID, Alg: alg, Issuer: issuer, public: jwk.Key()}
	switch pub := k.public.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSABits {
			return nil, false
		}
		// Prepared here, once per key, never per request. A key it refuses stays loaded as
		// before and verifies no RS token, as crypto/rsa would refuse it on every call.
		k.pkcs1, _ = newRSAPublicKey(pub)
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, false
	}
	for _, a := range algs {
		if k.fits(a) {
			return k, true
		}
	}
	return nil, false
}

// merge keeps the old *Key for every key that is unchanged, so its cached verdicts stay valid, and
// returns the keys that left.
func merge(old *keySet, fresh []*Key) (kept []*Key, gone []*Key) {
	kept = make([]*Key, len(fresh))
	copy(kept, fresh)
	if old == nil {
		return kept, nil
	}
	stays := make(map[*Key]bool, len(old.all))
	for i, f := range kept {
		for _, o := range old.all {
			if o.sameMaterial(f) {
				kept[i] = o
				stays[o] = true
				break
			}
		}
	}
	for _, o := range old.all {
		if !stays[o] {
			gone = append(gone, o)
		}
	}
	return kept, gone
}
