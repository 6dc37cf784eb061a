package extauthz

import (
	"crypto/sha256"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// tokenCache remembers verified tokens, keyed by the SHA-256 of the token (the token itself is not
// kept). It is bounded in entries (LRU); an entry lives no longer than the token's exp or the
// configured TTL, and ends when its key is revoked. Tenant status is never cached here.
type tokenCache struct {
	lru *lru.Cache[[sha256.Size]byte, *cacheEntry]
	ttl time.Duration
}

type cacheEntry struct {
	claims Claims
	key    *Key
	until  time.Time // min(exp, verified + ttl)

	// allowed is the last allow response built for this token, reused while the token names the
	// same tenant record (snapshot tenants are immutable: any change is a new pointer).
	allowed atomic.Pointer[allowMemo]
}

type allowMemo struct {
	tenant *tenant.Tenant
	resp   *authv3.CheckResponse
}

func newTokenCache(size int, ttl time.Duration) *tokenCache {
	if size <= 0 {
		return nil
	}
	c, err := lru.New[[sha256.Size]byte, *cacheEntry](size)
	if err != nil {
		return nil // only for size <= 0, excluded above
	}
	return &tokenCache{lru: c, ttl: ttl}
}

// get returns the entry of a token verified before, if it is still good at now: not past its
// deadline, its key not revoked, the token not expired. Otherwise nil.
func (c *tokenCache) get(sum [sha256.Size]byte, now time.Time) *cacheEntry {
	if c == nil {
		return nil
	}
	e, ok := c.lru.Get(sum)
	if !ok {
		return nil
	}
	if !now.Before(e.until) || e.key.Revoked() || !now.Before(e.claims.ExpiresAt) {
		c.lru.Remove(sum)
		return nil
	}
	return e
}

func (c *tokenCache) put(sum [sha256.Size]byte, claims Claims, key *Key, now time.Time) *cacheEntry {
	if c == nil {
		return nil
	}
	until := now.Add(c.ttl)
	if claims.ExpiresAt.Before(until) {
		until = claims.ExpiresAt
	}
	e := &cacheEntry{claims: claims, key: key, until: until}
	c.lru.Add(sum, e)
	return e
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	return c.lru.Len()
}

// dropRevoked removes every entry whose key was revoked, so their memory is freed at once rather
// than on their next lookup. Refreshes that remove keys are rare; this walks the cache once.
func (c *tokenCache) dropRevoked() {
	if c == nil {
		return
	}
	for _, k := range c.lru.Keys() {
		if e, ok := c.lru.Peek(k); ok && e.key.Revoked() {
			c.lru.Remove(k)
		}
	}
}
