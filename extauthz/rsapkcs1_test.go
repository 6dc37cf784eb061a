package extauthz

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"testing"
)

// rawRSAKey is an RSA key as plain numbers, so a test can sign any encoded message, however
// malformed, and use exponents crypto/rsa will not generate.
type rawRSAKey struct {
	pub rsa.PublicKey
	d   *big.Int
}

func rawOf(k *rsa.PrivateKey) rawRSAKey { return rawRSAKey{pub: k.PublicKey, d: k.D} }

// rawRSAKeyE3 makes a key with public exponent 3 (primes p ≡ 2 mod 3, so 3 is invertible).
func rawRSAKeyE3(t testing.TB, bits int) rawRSAKey {
	t.Helper()
	three := big.NewInt(3)
	prime := func() *big.Int {
		for {
			p, err := rand.Prime(rand.Reader, bits/2)
			if err != nil {
				t.Fatal(err)
			}
			if new(big.Int).Mod(p, three).Int64() == 2 {
				return p
			}
		}
	}
	p, q := prime(), prime()
	n := new(big.Int).Mul(p, q)
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	return rawRSAKey{pub: rsa.PublicKey{N: n, E: 3}, d: new(big.Int).ModInverse(three, phi)}
}

// signEM returns em^d mod n as a signature of the modulus' length: the signature whose encoded
// message is em (em must be below n).
func (k rawRSAKey) signEM(em []byte) []byte {
	s := new(big.Int).Exp(new(big.Int).SetBytes(em), k.d, k.pub.N)
	return s.FillBytes(make([]byte, k.pub.Size()))
}

// encodePKCS1v15 builds EM = 0x00 0x01 PS 0x00 T for a k-byte modulus with t = prefix || digest,
// psLen 0xff bytes and tail appended: the parts a test breaks one at a time.
func encodePKCS1v15(k int, blockType byte, psLen int, psByte byte, prefix, digest, tail []byte) []byte {
	em := []byte{0x00, blockType}
	em = append(em, bytes.Repeat([]byte{psByte}, psLen)...)
	em = append(em, 0x00)
	em = append(em, prefix...)
	em = append(em, digest...)
	em = append(em, tail...)
	if len(em) < k {
		em = append(em, make([]byte, k-len(em))...)
	}
	return em[:k]
}

// agreeWithCryptoRSA fails t unless the prepared key and crypto/rsa both accept or both refuse.
func agreeWithCryptoRSA(t testing.TB, what string, prepared *rsaPublicKey, pub *rsa.PublicKey, hash crypto.Hash, digest, sig []byte) bool {
	t.Helper()
	ours := prepared.verifyPKCS1v15(hash, digest, sig)
	std := rsa.VerifyPKCS1v15(pub, hash, digest, sig)
	if (ours == nil) != (std == nil) {
		t.Fatalf("%s: %v, %d-byte signature %x: prepared key says %v, crypto/rsa says %v", what, hash, len(sig), sig, ours, std)
	}
	return std == nil
}

// TestRSAPublicKey_AgreesWithCryptoRSA: for keys of several sizes and exponents, every hash, and
// valid, corrupted, truncated, extended, out-of-range and deliberately mis-encoded signatures
// (each signed for real, so only the encoding is wrong), the key prepared once accepts exactly
// what crypto/rsa.VerifyPKCS1v15 accepts.
func TestRSAPublicKey_AgreesWithCryptoRSA(t *testing.T) {
	odd, err := rsa.GenerateKey(rand.Reader, 2056) // a modulus that does not fill its last word
	if err != nil {
		t.Fatal(err)
	}
	keys := []rawRSAKey{rawOf(rsaKey(t, 0)), rawOf(rsaKey(t, 1)), rawOf(rsaKey(t, 2)), rawOf(odd), rawRSAKeyE3(t, 2048)}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for ki, key := range keys {
		prepared, err := newRSAPublicKey(&key.pub)
		if err != nil {
			t.Fatalf("key %d: %v", ki, err)
		}
		k := key.pub.Size()
		n := key.pub.N
		for _, hash := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			prefix := []byte(digestInfoPrefixes[hash])
			for msg := range 3 {
				h := hash.New()
				fmt.Fprintf(h, "message %d %d", ki, msg)
				digest := h.Sum(nil)
				valid := key.signEM(encodePKCS1v15(k, 0x01, k-3-len(prefix)-len(digest), 0xff, prefix, digest, nil))
				other := append([]byte(nil), digest...)
				other[rng.IntN(len(other))] ^= 0x01
				name := fmt.Sprintf("key%d/%v/msg%d", ki, hash, msg)
				cases := []struct {
					what   string
					digest []byte
					sig    []byte
					valid  bool
				}{
					{"valid", digest, valid, true},
					{"another digest", other, valid, false},
					{"a bit flipped", digest, flipBit(valid, rng.IntN(8*k)), false},
					{"truncated", digest, valid[1:], false},
					{"extended with a leading zero", digest, append([]byte{0}, valid...), false},
					{"extended with a trailing byte", digest, append(append([]byte(nil), valid...), 0), false},
					{"empty", digest, nil, false},
					{"s = 0", digest, make([]byte, k), false},
					{"s = 1", digest, new(big.Int).SetInt64(1).FillBytes(make([]byte, k)), false},
					{"s = n-1", digest, new(big.Int).Sub(n, big.NewInt(1)).FillBytes(make([]byte, k)), false},
					{"s = n", digest, n.FillBytes(make([]byte, k)), false},
					{"s = n+1", digest, new(big.Int).Add(n, big.NewInt(1)).FillBytes(make([]byte, k)), false},
					{"s = valid+n", digest, addModulus(valid, n, k), false},
					{"s all ones", digest, bytes.Repeat([]byte{0xff}, k), false},
					{"block type 2", digest, key.signEM(encodePKCS1v15(k, 0x02, k-3-len(prefix)-len(digest), 0xff, prefix, digest, nil)), false},
					{"padding byte not 0xff", digest, key.signEM(encodePKCS1v15(k, 0x01, k-3-len(prefix)-len(digest), 0xfe, prefix, digest, nil)), false},
					{"garbage after the digest", digest, key.signEM(encodePKCS1v15(k, 0x01, 8, 0xff, prefix, digest, []byte("forged"))), false},
					{"short padding, garbage after", digest, key.signEM(encodePKCS1v15(k, 0x01, k-3-len(prefix)-len(digest)-4, 0xff, prefix, digest, []byte{1, 2, 3, 4})), false},
					{"DigestInfo without NULL parameters", digest, key.signEM(encodePKCS1v15(k, 0x01, k-3-len(prefix)-len(digest)+2, 0xff, withoutNullParams(prefix), digest, nil)), false},
					{"no DigestInfo, bare digest", digest, key.signEM(encodePKCS1v15(k, 0x01, k-3-len(digest), 0xff, nil, digest, nil)), false},
				}
				for _, c := range cases {
					if got := agreeWithCryptoRSA(t, name+", "+c.what, prepared, &key.pub, hash, c.digest, c.sig); got != c.valid {
						t.Fatalf("%s, %s: valid = %v, want %v", name, c.what, got, c.valid)
					}
				}
			}
		}
	}
}

// withoutNullParams is the DigestInfo prefix with the algorithm's NULL parameters left out (the
// other encoding some signers produced, which RFC 8017 verification does not accept).
func withoutNullParams(prefix []byte) []byte {
	// 30 L 30 0d 06 09 <OID> 05 00 04 hLen  ->  30 L-2 30 0b 06 09 <OID> 04 hLen
	out := []byte{prefix[0], prefix[1] - 2, prefix[2], prefix[3] - 2}
	out = append(out, prefix[4:len(prefix)-4]...)
	return append(out, prefix[len(prefix)-2:]...)
}

func flipBit(b []byte, bit int) []byte {
	out := append([]byte(nil), b...)
	out[bit/8] ^= 1 << (bit % 8)
	return out
}

// addModulus returns s+n in k bytes, or nil when it no longer fits (then the case is an empty
// signature, also invalid).
func addModulus(s []byte, n *big.Int, k int) []byte {
	v := new(big.Int).Add(new(big.Int).SetBytes(s), n)
	if (v.BitLen()+7)/8 > k {
		return nil
	}
	return v.FillBytes(make([]byte, k))
}

// TestNewRSAPublicKey_RefusesWhatCryptoRSARefuses: keys that crypto/rsa refuses on every
// verification, and moduli under 2048 bits, are not prepared; a key left unprepared verifies nothing.
func TestNewRSAPublicKey_RefusesWhatCryptoRSARefuses(t *testing.T) {
	good := rsaKey(t, 0).PublicKey
	digest := make([]byte, 32)
	for _, tc := range []struct {
		name      string
		pub       rsa.PublicKey
		ourPolicy bool // refused by our key policy only: crypto/rsa takes 1024 bits and up
	}{
		{"no modulus", rsa.PublicKey{E: 65537}, false},
		{"even modulus", rsa.PublicKey{N: new(big.Int).Add(good.N, big.NewInt(1)), E: 65537}, false},
		{"1024-bit modulus", rsaSmall.PublicKey, true},
		{"exponent 1", rsa.PublicKey{N: good.N, E: 1}, false},
		{"even exponent", rsa.PublicKey{N: good.N, E: 65536}, false},
		{"negative exponent", rsa.PublicKey{N: good.N, E: -3}, false},
		{"exponent above 2^31-1", rsa.PublicKey{N: good.N, E: 1<<31 + 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if k, err := newRSAPublicKey(&tc.pub); err == nil {
				t.Fatalf("prepared %+v", k)
			}
			// crypto/rsa refuses the key itself, whatever the signature.
			if err := rsa.VerifyPKCS1v15(&tc.pub, crypto.SHA256, digest, make([]byte, 256)); !tc.ourPolicy && (err == nil || err == rsa.ErrVerification) {
				t.Fatalf("crypto/rsa takes the key: %v", err)
			}
		})
	}
	if _, err := newRSAPublicKey(&good); err != nil {
		t.Fatalf("a good key is refused: %v", err)
	}
	var unprepared *rsaPublicKey
	if err := unprepared.verifyPKCS1v15(crypto.SHA256, digest, make([]byte, 256)); err == nil {
		t.Fatal("an unprepared key verified a signature")
	}
}

// FuzzRSAPublicKeyAgreesWithCryptoRSA: for any message and any signature, given as bytes or made by
// signing an arbitrary encoded message with the private key, the prepared key and crypto/rsa agree.
func FuzzRSAPublicKeyAgreesWithCryptoRSA(f *testing.F) {
	key := rawOf(rsaKey(f, 0))
	k := key.pub.Size()
	digest := func(hash crypto.Hash, msg []byte) []byte {
		h := hash.New()
		h.Write(msg)
		return h.Sum(nil)
	}
	for i, hash := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := digest(hash, []byte("seed"))
		prefix := []byte(digestInfoPrefixes[hash])
		f.Add([]byte("seed"), uint8(i), true, encodePKCS1v15(k, 0x01, k-3-len(prefix)-len(d), 0xff, prefix, d, nil))
		f.Add([]byte("seed"), uint8(i), true, encodePKCS1v15(k, 0x01, 8, 0xff, prefix, d, []byte("tail")))
	}
	f.Add([]byte("seed"), uint8(0), false, make([]byte, k))
	f.Add([]byte("seed"), uint8(0), false, bytes.Repeat([]byte{0xff}, k))
	f.Add([]byte(""), uint8(1), false, []byte{1})
	prepared, err := newRSAPublicKey(&key.pub)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte, hashSel uint8, signIt bool, data []byte) {
		hash := []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512}[int(hashSel)%3]
		sig := data
		if signIt {
			em := make([]byte, k)
			copy(em, data)
			em[0] = 0 // below n
			sig = key.signEM(em)
		}
		agreeWithCryptoRSA(t, "fuzz", prepared, &key.pub, hash, digest(hash, msg), sig)
	})
}
