package extauthz

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"

	"filippo.io/bigmod"
	"github.com/golang-jwt/jwt/v5"
)

// crypto/rsa rebuilds the Montgomery form of the modulus (R² mod N) from the *rsa.PublicKey on
// every VerifyPKCS1v15, a third of an RS256 check. A JWKS key verifies thousands of tokens, so
// rsaPublicKey does that once, when the key is loaded, with filippo.io/bigmod (the standard
// library's own modular arithmetic, published as a module), and then verifies exactly as
// crypto/rsa does: s < n, s^e mod n, and a byte-for-byte comparison of the whole result with the
// one encoding it must be. The padding is never parsed.

// rsaPublicKey is an RSA public key prepared for PKCS #1 v1.5 signature verification.
type rsaPublicKey struct {
	n    *bigmod.Modulus
	e    uint
	size int // the modulus length in bytes: every signature and encoded message has this length
}

// newRSAPublicKey prepares pub, refusing what crypto/rsa refuses on every verification (an even
// modulus, an exponent that is even, below 2 or above 2³¹-1) and moduli under minRSABits.
func newRSAPublicKey(pub *rsa.PublicKey) (*rsaPublicKey, error) {
	switch {
	case pub.N == nil || pub.N.Sign() <= 0:
		return nil, errors.New("RSA key: missing modulus")
	case pub.N.Bit(0) == 0:
		return nil, errors.New("RSA key: even modulus")
	case pub.N.BitLen() < minRSABits:
		return nil, fmt.Errorf("RSA key: %d-bit modulus, under %d bits", pub.N.BitLen(), minRSABits)
	case pub.E < 2 || pub.E&1 == 0 || pub.E > 1<<31-1:
		return nil, fmt.Errorf("RSA key: unusable public exponent %d", pub.E)
	}
	n, err := bigmod.NewModulus(pub.N.Bytes())
	if err != nil {
		return nil, fmt.Errorf("RSA key: %w", err)
	}
	return &rsaPublicKey{n: n, e: uint(pub.E), size: n.Size()}, nil
}

// digestInfoPrefixes are the DER encodings of DigestInfo before the digest (RFC 8017 section 9.2,
// note 1), for the hashes of RS256, RS384 and RS512. Strings, so nothing can change them.
var digestInfoPrefixes = map[crypto.Hash]string{
	crypto.SHA256: "\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20",
	crypto.SHA384: "\x30\x41\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02\x05\x00\x04\x30",
	crypto.SHA512: "\x30\x51\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x03\x05\x00\x04\x40",
}

// verifyPKCS1v15 reports whether sig is a PKCS #1 v1.5 signature (RSASSA-PKCS1-v1_5, RFC 8017
// section 8.2.2) of the digest hashed, with crypto/rsa's outcome for every input. A nil key
// verifies nothing.
func (k *rsaPublicKey) verifyPKCS1v15(hash crypto.Hash, hashed, sig []byte) error {
	prefix, ok := digestInfoPrefixes[hash]
	if !ok || len(hashed) != hash.Size() {
		return errors.New("rsa: unsupported hash or input not a digest")
	}
	if k == nil || len(sig) != k.size {
		return rsa.ErrVerification
	}
	s, err := bigmod.NewNat().SetBytes(sig, k.n) // refuses s >= n
	if err != nil {
		return rsa.ErrVerification
	}
	em := bigmod.NewNat().ExpShortVarTime(s, k.e, k.n).Bytes(k.n)
	// EM = 0x00 || 0x01 || PS (0xff bytes, at least 8) || 0x00 || DigestInfo prefix || digest.
	tLen := len(prefix) + len(hashed)
	if k.size < tLen+11 {
		return rsa.ErrVerification
	}
	want := make([]byte, k.size)
	want[1] = 0x01
	for i := 2; i < k.size-tLen-1; i++ {
		want[i] = 0xff
	}
	copy(want[k.size-tLen:], prefix)
	copy(want[k.size-len(hashed):], hashed)
	if !bytes.Equal(em, want) {
		return rsa.ErrVerification
	}
	return nil
}

// rsaPKCS1v15Method is RS256, RS384 or RS512 for keys prepared with newRSAPublicKey. It is handed
// only to this package's verifier and never registered with golang-jwt, whose own RS methods stay
// as they are for everyone else.
type rsaPKCS1v15Method struct {
	alg  string
	hash crypto.Hash
}

var rsaPKCS1v15Methods = map[string]*rsaPKCS1v15Method{
	"RS256": {alg: "RS256", hash: crypto.SHA256},
	"RS384": {alg: "RS384", hash: crypto.SHA384},
	"RS512": {alg: "RS512", hash: crypto.SHA512},
}

// Alg implements jwt.SigningMethod.
func (m *rsaPKCS1v15Method) Alg() string { return m.alg }

// Verify implements jwt.SigningMethod; key must be a *rsaPublicKey.
func (m *rsaPKCS1v15Method) Verify(signingString string, sig []byte, key any) error {
	k, ok := key.(*rsaPublicKey)
	if !ok {
		return fmt.Errorf("%s verify expects a prepared RSA key: %w", m.alg, jwt.ErrInvalidKeyType)
	}
	h := m.hash.New()
	h.Write([]byte(signingString))
	return k.verifyPKCS1v15(m.hash, h.Sum(nil), sig)
}

// Sign implements jwt.SigningMethod: the verifier never signs.
func (m *rsaPKCS1v15Method) Sign(string, any) ([]byte, error) {
	return nil, errors.New("extauthz: RS methods here only verify")
}
