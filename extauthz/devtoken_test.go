package extauthz

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
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

// TestDevToken_AdminScopeWithoutTenant: a dev token may carry a scope instead of a tenant (an admin
// token for the provisioner API); the verifier reads the scope, and a token with neither is refused.
func TestDevToken_AdminScopeWithoutTenant(t *testing.T) {
	dir := t.TempDir()
	jwksPath := filepath.Join(dir, "dev-jwks.json")
	key, err := GenerateDevKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := key.Save(filepath.Join(dir, "dev-key.json"), jwksPath); err != nil {
		t.Fatal(err)
	}
	if _, err := key.Mint(DevToken{Audience: "tenantgate", TTL: time.Hour}); err == nil {
		t.Fatal("minted a token with neither tenant nor scope")
	}
	tok, err := key.Mint(DevToken{Audience: "tenantgate", Subject: "admin", Scope: "tenantgate:admin other", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cfg := authzConfig(config.Issuer{Issuer: DevIssuer, Audiences: []string{"tenantgate"}, JWKSFile: jwksPath})
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); v.Ready() != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(v.Ready())
		}
	}
	c, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tenant != "" || !slices.Contains(c.Scope, "tenantgate:admin") || c.Subject != "admin" {
		t.Fatalf("claims = %+v, want no tenant, scope tenantgate:admin, subject admin", c)
	}
}
