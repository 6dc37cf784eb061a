package extauthz

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

func TestCheck_FailsClosedWhenKeysNeverLoaded(t *testing.T) {
	a := newEdSigner(t, "key-a")
	js := newJWKSServer(t, []byte("down"))
	js.set([]byte("down"), http.StatusServiceUnavailable, 0)
	s := startServer(t, authzConfig(issuerFor(js, mainIss)), allTenants(), js.Client())
	eventually(t, 5*time.Second, func() bool { return js.fetches.Load() > 0 })

	tok := freshToken(t, a, mainIss)
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusServiceUnavailable, tok)
	if s.Ready() == nil {
		t.Fatal("ready without keys")
	}
	// Other failures stay 401: fail closed is for missing state, not for bad tokens.
	assertDenied(t, check(t, s, checkReq("x", bearer("a.b.c"), nil)), http.StatusUnauthorized, "")
}

func TestCheck_FailsClosedBeforeTenantsLoad(t *testing.T) {
	a := newEdSigner(t, "key-a")
	js := newJWKSServer(t, jwksOf(t, a))
	s := startServer(t, authzConfig(issuerFor(js, mainIss)), staticTenants{snap: snapshot.New(nil, 0)}, js.Client())
	waitReady(t, s)
	tok := freshToken(t, a, mainIss)
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusServiceUnavailable, tok)
}

// TestCheck_FailsClosedForUnknownTenantWhileRegistryIsDown: a tenant missing from the snapshot may
// be one the registry created while unreachable: 503, not 403. Known tenants keep working.
func TestCheck_FailsClosedForUnknownTenantWhileRegistryIsDown(t *testing.T) {
	a := newEdSigner(t, "key-a")
	js := newJWKSServer(t, jwksOf(t, a))
	s := startServer(t, authzConfig(issuerFor(js, mainIss)), allTenants(), js.Client(), WithRegistryHealth(func() bool { return false }))
	waitReady(t, s)
	tok := a.sign(t, nil, claimsFor(mainIss, never))
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusServiceUnavailable, tok)
	assertAllowed(t, check(t, s, checkReq("x", bearer(freshToken(t, a, mainIss)), nil)), acme, "user-1")
	tok = a.sign(t, nil, claimsFor(mainIss, frozen.ID))
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusForbidden, tok)
}

// TestCheck_SuspensionTakesEffectAtOnce: a cached token of a tenant that is then suspended is
// denied as soon as the snapshot has the change; tenant status is never cached.
func TestCheck_SuspensionTakesEffectAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	reg := registry.NewMemory()
	created, err := reg.Create(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	store := snapshot.NewStore(reg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = store.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	<-store.Ready()

	a := newEdSigner(t, "key-a")
	js := newJWKSServer(t, jwksOf(t, a))
	s := startServer(t, authzConfig(issuerFor(js, mainIss)), store, js.Client())
	waitReady(t, s)
	tok := freshToken(t, a, mainIss)
	assertAllowed(t, check(t, s, checkReq("x", bearer(tok), nil)), acme, "user-1")

	created.Status = tenant.Suspended
	if _, err := reg.Update(ctx, created); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		t, _ := store.Load().ByID(acme.ID)
		return t.Status == tenant.Suspended
	})
	assertDenied(t, check(t, s, checkReq("x", bearer(tok), nil)), http.StatusForbidden, tok)
}
