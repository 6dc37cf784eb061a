package extauthz

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// DevIssuer is the issuer of development tokens. Nothing trusts it unless the operator lists it
// under authz.issuers with the dev key's public JWKS as its jwks_file.
const DevIssuer = "tenantgate-dev"

// DevKey is a development signing key (Ed25519), kept as a private JWK in a file of mode 0600.
type DevKey struct {
	id   string
	priv ed25519.PrivateKey
}

// GenerateDevKey makes a new development key.
func GenerateDevKey() (*DevKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev key: %w", err)
	}
	sum := sha256.Sum256(pub)
	return &DevKey{id: "dev-" + base64.RawURLEncoding.EncodeToString(sum[:9]), priv: priv}, nil
}

// LoadDevKey reads a development key written by Save.
func LoadDevKey(path string) (*DevKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dev key: %w", err)
	}
	jwk, err := jwkset.NewJWKFromRawJSON(data, jwkset.JWKMarshalOptions{Private: true}, jwkset.JWKValidateOptions{})
	if err != nil {
		return nil, fmt.Errorf("read dev key %s: %w", path, err)
	}
	priv, ok := jwk.Key().(ed25519.PrivateKey)
	if !ok || jwk.Marshal().KID == "" {
		return nil, fmt.Errorf("read dev key %s: not an Ed25519 private JWK with a kid", path)
	}
	return &DevKey{id: jwk.Marshal().KID, priv: priv}, nil
}

// ID is the key's kid.
func (k *DevKey) ID() string { return k.id }

// Save writes the private key to path (mode 0600, never overwriting) and its public JWKS to jwksPath.
func (k *DevKey) Save(path, jwksPath string) error {
	priv, err := k.jwk(k.priv, true)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write dev key: %w", err)
	}
	if _, err := f.Write(append(priv, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("write dev key: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write dev key: %w", err)
	}
	jwks, err := k.PublicJWKS()
	if err != nil {
		return err
	}
	if err := os.WriteFile(jwksPath, append(jwks, '\n'), 0o644); err != nil {
		return fmt.Errorf("write dev jwks: %w", err)
	}
	return nil
}

// PublicJWKS is the JWKS that lets `serve` verify the key's tokens.
func (k *DevKey) PublicJWKS() ([]byte, error) {
	pub, err := k.jwk(k.priv.Public(), false)
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string][]json.RawMessage{"keys": {pub}})
}

func (k *DevKey) jwk(key any, private bool) ([]byte, error) {
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: k.id, ALG: jwkset.AlgEdDSA, USE: jwkset.UseSig},
		Marshal:  jwkset.JWKMarshalOptions{Private: private},
	})
	if err != nil {
		return nil, fmt.Errorf("encode dev key: %w", err)
	}
	return json.Marshal(j.Marshal())
}

// DevToken describes one development token.
type DevToken struct {
	Issuer      string // default DevIssuer
	Audience    string
	Subject     string
	TenantClaim string // default tenant_id
	Tenant      string // may be empty only for a token with a Scope (an admin token)
	Scope       string // space-separated scopes, such as tenantgate:admin; none if empty
	TTL         time.Duration
	Now         time.Time // default time.Now()
}

// Mint signs a development token (EdDSA, typ JWT, with kid).
func (k *DevKey) Mint(t DevToken) (string, error) {
	if t.Issuer == "" {
		t.Issuer = DevIssuer
	}
	if t.TenantClaim == "" {
		t.TenantClaim = "tenant_id"
	}
	if t.Now.IsZero() {
		t.Now = time.Now()
	}
	if t.Audience == "" || (t.Tenant == "" && t.Scope == "") || t.TTL <= 0 {
		return "", errors.New("mint dev token: audience, a tenant or a scope, and a positive ttl are required")
	}
	jti := make([]byte, 12)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	claims := jwt.MapClaims{
		"iss": t.Issuer,
		"aud": t.Audience,
		"sub": t.Subject,
		"iat": t.Now.Unix(),
		"nbf": t.Now.Unix(),
		"exp": t.Now.Add(t.TTL).Unix(),
		"jti": base64.RawURLEncoding.EncodeToString(jti),
	}
	if t.Tenant != "" {
		claims[t.TenantClaim] = t.Tenant
	}
	if t.Scope != "" {
		claims["scope"] = t.Scope
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = k.id
	s, err := tok.SignedString(k.priv)
	if err != nil {
		return "", fmt.Errorf("mint dev token: %w", err)
	}
	return s, nil
}
