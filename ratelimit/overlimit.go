package ratelimit

import (
	"hash/maphash"
	"strconv"
	"sync"
)

// overLimitCache remembers counters known to be over their limit until a time, so that requests for
// them are refused without asking the store. A counter is over until T when its window counted at
// least its limit at a decision and T is when the oldest counted sub-window leaves: before T nothing
// leaves the window, so the count can only grow and every request with hits >= 1 is refused.
// Memory is bounded: at most size entries, expired ones evicted first, else an arbitrary one.
type overLimitCache struct {
	seed   maphash.Seed
	shards []overLimitShard
	per    int // entries per shard
}

type overLimitShard struct {
	mu      sync.Mutex
	until   map[string]int64 // cache key -> Unix ms
	sweptAt int64
}

func newOverLimitCache(size int) *overLimitCache {
	if size <= 0 {
		return nil
	}
	n := 16
	if size < 16*16 {
		n = 1
	}
	c := &overLimitCache{seed: maphash.MakeSeed(), shards: make([]overLimitShard, n), per: max(1, size/n)}
	for i := range c.shards {
		c.shards[i].until = make(map[string]int64)
	}
	return c
}

// cacheKey includes the limit, so that a plan change is never answered from a stale entry.
func cacheKey(c counter) string { return string(appendCacheKey(nil, c)) }

// appendCacheKey appends cacheKey(c) to b, so that a lookup can build the key without allocating.
func appendCacheKey(b []byte, c counter) []byte {
	b = append(b, c.Key...)
	b = append(b, '|')
	return strconv.AppendInt(b, c.Window.Limit, 10)
}

func (c *overLimitCache) shard(key string) *overLimitShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

// overUntil returns when counter k stops being known over its limit; 0 (or a past time) if it is
// not. It builds the key on the stack: the hot path asks it of every counter with hits, and almost
// always finds nothing.
func (c *overLimitCache) overUntil(k counter, nowMS int64) int64 {
	if c == nil {
		return 0
	}
	var buf [128]byte
	key := appendCacheKey(buf[:0], k)
	sh := &c.shards[maphash.Bytes(c.seed, key)%uint64(len(c.shards))]
	sh.mu.Lock()
	until, ok := sh.until[string(key)]
	if ok && until <= nowMS {
		delete(sh.until, string(key))
		until = 0
	}
	sh.mu.Unlock()
	return until
}

// add remembers that key is over its limit until untilMS.
func (c *overLimitCache) add(key string, untilMS, nowMS int64) {
	if c == nil || untilMS <= nowMS {
		return
	}
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.until[key]; !ok && len(sh.until) >= c.per {
		sh.evict(nowMS, c.per)
	}
	sh.until[key] = untilMS
}

// evict makes room for one entry: expired entries go first (looked for at most once a second, so a
// cache full of live entries costs O(1) per add), else an arbitrary one.
func (sh *overLimitShard) evict(nowMS int64, per int) {
	if nowMS-sh.sweptAt >= 1000 {
		sh.sweptAt = nowMS
		for k, u := range sh.until {
			if u <= nowMS {
				delete(sh.until, k)
			}
		}
	}
	for k := range sh.until {
		if len(sh.until) < per {
			break
		}
		delete(sh.until, k)
	}
}

// purgePrefix forgets every entry whose key starts with prefix (a tenant's keys).
func (c *overLimitCache) purgePrefix(prefix string) {
	if c == nil {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for k := range sh.until {
			if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
				delete(sh.until, k)
			}
		}
		sh.mu.Unlock()
	}
}

// len is the number of entries (for tests).
func (c *overLimitCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].until)
		c.shards[i].mu.Unlock()
	}
	return n
}
