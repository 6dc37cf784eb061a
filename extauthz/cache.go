package extauthz

import (
	"crypto/sha256"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
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

// get returns the claims of a token verified before, if the entry is still good at now: not past
// its deadline, its key not revoked, the token not expired.
func (c *tokenCache) get(sum [sha256.Size]byte, now time.Time) (Claims, bool) {
	if c == nil {
		return Claims{}, false
	}
	e, ok := c.lru.Get(sum)
	if !ok {
		return Claims{}, false
	}
	if !now.Before(e.until) || e.key.Revoked() || !now.Before(e.claims.ExpiresAt) {
		c.lru.Remove(sum)
		return Claims{}, false
	}
	return e.claims, true
}

func (c *tokenCache) put(sum [sha256.Size]byte, claims Claims, key *Key, now time.Time) {
	if c == nil {
		return
	}
	until := now.Add(c.ttl)
	if claims.ExpiresAt.Before(until) {
		until = claims.ExpiresAt
	}
	c.lru.Add(sum, &cacheEntry{claims: claims, key: key, until: until})
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	return c.lru.Len()
}
