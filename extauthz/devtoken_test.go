package extauthz

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

// TestDevToken_TrustedOnlyWhereConfigured: a dev token is denied by a server that does not list
// the dev issuer, and allowed by one whose config names it with the dev key's JWKS.
func TestDevToken_TrustedOnlyWhereConfigured(t *testing.T) {
	dir := t.TempDir()
	keyPath, jwksPath := filepath.Join(dir, "dev-key.json"), filepath.Join(dir, "dev-jwks.json")
	key, err := GenerateDevKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Save(keyPath, jwksPath); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file mode: %v %v", fi.Mode(), err)
	}
	if err := key.Save(keyPath, jwksPath); err == nil {
		t.Fatal("Save overwrote an existing key")
	}
	loaded, err := LoadDevKey(keyPath)
	if err != nil || loaded.ID() != key.ID() {
		t.Fatalf("LoadDevKey = %v, %v", loaded, err)
	}
	tok, err := loaded.Mint(DevToken{Audience: "tenantgate", Subject: "dev", Tenant: acme.ID, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}

	// A production-like server: some other issuer, no dev issuer.
	other := newJWKSServer(t, jwksOf(t, newEdSigner(t, "k")))
	prod := startServer(t, authzConfig(issuerFor(other, mainIss)), allTenants(), other.Client())
	waitReady(t, prod)
	assertDenied(t, check(t, prod, checkReq("x", bearer(tok), nil)), http.StatusUnauthorized, tok)
	if reasonTotal(prod, ReasonUnknownIssuer) != 1 {
		t.Fatal("dev token not denied as from an unknown issuer")
	}

	dev := startServer(t, authzConfig(config.Issuer{Issuer: DevIssuer, Audiences: []string{"tenantgate"}, JWKSFile: jwksPath}), allTenants(), http.DefaultClient)
	waitReady(t, dev)
	assertAllowed(t, check(t, dev, checkReq("x", bearer(tok), nil)), acme, "dev")
}
