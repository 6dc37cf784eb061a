package ratelimit

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// The conformance suite: every store must give the same decisions.
func TestStores_Conformance(t *testing.T) {
	for _, sc := range storeCases() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			t.Run("AdmitsUpToTheLimitThenRefuses", func(t *testing.T) {
				l := newTestLimiter(t, sc.open(t))
				if got := admitN(t, l, tenantReq(acmeID), 7); got != 5 {
					t.Fatalf("admitted %d of 7 in a 5 per 400ms window, want 5", got)
				}
			})
			t.Run("RefusedRequestsDoNotConsumeQuota", func(t *testing.T) {
				store := sc.open(t)
				l := newTestLimiter(t, store, func(c *Config) { c.OverLimitCacheSize = 0 })
				if got := admitN(t, l, request(withHits(entries(entryTenant, acmeID), 4)), 1); got != 1 {
					t.Fatal("4 hits of 5 refused")
				}
				// 2 more would exceed: refused, and must not be counted.
				for range 3 {
					if admitN(t, l, request(withHits(entries(entryTenant, acmeID), 2)), 1) != 0 {
						t.Fatal("2 hits admitted on top of 4 of 5")
					}
				}
				if admitN(t, l, tenantReq(acmeID), 1) != 1 {
					t.Fatal("the last unit of quota was consumed by refused requests")
				}
			})
			t.Run("ChecksAllWindowsThenIncrementsAll", func(t *testing.T) {
				l := newTestLimiter(t, sc.open(t), func(c *Config) { c.OverLimitCacheSize = 0 })
				both := request(entries(entryTenant, acmeID), entries(entryTenant, acmeID, entryEndpoint, "search"))
				if got := admitN(t, l, both, 4); got != 2 {
					t.Fatalf("admitted %d, want 2 (search allows 2 per 400ms)", got)
				}
				// The refused requests did not count against the tenant-wide window: 3 of 5 left.
				if got := admitN(t, l, tenantReq(acmeID), 5); got != 3 {
					t.Fatalf("tenant-wide admitted %d after 2, want 3", got)
				}
			})
			t.Run("ZeroHitsChecksWithoutCounting", func(t *testing.T) {
				l := newTestLimiter(t, sc.open(t))
				check := request(withHits(entries(entryTenant, acmeID), 0))
				if got := admitN(t, l, check, 20); got != 20 {
					t.Fatalf("check-only admitted %d of 20", got)
				}
				if got := admitN(t, l, tenantReq(acmeID), 6); got != 5 {
					t.Fatalf("after checks, admitted %d, want 5", got)
				}
				resp := should(t, l, check)
				if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || resp.GetStatuses()[0].GetLimitRemaining() != 0 {
					t.Fatalf("check at the limit: %v", resp)
				}
			})
			t.Run("QuotaComesBackAfterTheWindowSlides", func(t *testing.T) {
				l := newTestLimiter(t, sc.open(t))
				if got := admitN(t, l, tenantReq(globexID), 4); got != 3 {
					t.Fatalf("admitted %d, want 3", got)
				}
				resp := should(t, l, tenantReq(globexID))
				reset := resp.GetStatuses()[0].GetDurationUntilReset().AsDuration()
				if reset <= 0 || reset > 400*time.Millisecond+7*time.Millisecond {
					t.Fatalf("duration_until_reset %v, want in (0, W+g]", reset)
				}
				time.Sleep(reset + 20*time.Millisecond)
				if got := admitN(t, l, tenantReq(globexID), 4); got != 3 {
					t.Fatalf("after the window slid, admitted %d, want 3", got)
				}
			})
			t.Run("TenantsAndEndpointsCountApart", func(t *testing.T) {
				l := newTestLimiter(t, sc.open(t))
				a := admitN(t, l, request(entries(entryTenant, acmeID, entryEndpoint, "orders")), 6)
				b := admitN(t, l, request(entries(entryTenant, acmeID, entryEndpoint, "billing")), 6)
				c := admitN(t, l, tenantReq(globexID), 6)
				if a != 5 || b != 5 || c != 3 {
					t.Fatalf("admitted orders %d billing %d globex %d, want 5 5 3", a, b, c)
				}
			})
			t.Run("PurgeTenantRemovesItsCounters", func(t *testing.T) {
				l := newTestLimiter(t, sc.open(t))
				admitN(t, l, tenantReq(acmeID), 6)
				admitN(t, l, tenantReq(globexID), 4)
				if err := l.PurgeTenant(context.Background(), acmeID); err != nil {
					t.Fatal(err)
				}
				if got := admitN(t, l, tenantReq(acmeID), 6); got != 5 {
					t.Fatalf("after purge admitted %d, want 5 (cache and store cleared)", got)
				}
				if got := admitN(t, l, tenantReq(globexID), 1); got != 0 {
					t.Fatal("purging one tenant cleared another's counters")
				}
			})
		})
	}
}

func TestRedisStore_KeysShareTheTenantSlotAndExpireWithinWindowPlusSubWindow(t *testing.T) {
	store := openTestRedisStore(t)
	l := newTestLimiter(t, store)
	should(t, l, request(entries(entryTenant, acmeID), entries(entryTenant, acmeID, entryEndpoint, "search")))
	ctx := context.Background()
	keys, err := store.client.Keys(ctx, escapeGlob(store.prefix)+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	index := store.indexKey(acmeID)
	if len(keys) != 4 || !slices.Contains(keys, index) {
		t.Fatalf("keys %v, want 4 (two tenant windows, one endpoint window, the tenant's index)", keys)
	}
	members, err := store.client.SMembers(ctx, index).Result()
	if err != nil || len(members) != 3 {
		t.Fatalf("index names %v (%v), want the 3 counters", members, err)
	}
	for _, k := range keys {
		if want := store.prefix + "{" + acmeID + "}:"; !strings.HasPrefix(k, want) {
			t.Errorf("key %q does not start with the tenant hash tag %q", k, want)
		}
		ttl, err := store.client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The longest window is 2s, its sub-window 34ms.
		if ttl <= 0 || ttl > 2*time.Second+34*time.Millisecond {
			t.Errorf("key %q TTL %v, want in (0, W+g]", k, ttl)
		}
		if k == index {
			continue
		}
		if !slices.Contains(members, k) {
			t.Errorf("counter %q missing from the index", k)
		}
		// One sub-window with the request's hit, the total 't' and the oldest sub-window 'o'.
		fields, err := store.client.HGetAll(ctx, k).Result()
		if err != nil || len(fields) != 3 || fields["t"] != "1" || fields[fields["o"]] != "1" {
			t.Errorf("key %q holds %v (%v), want one sub-window of 1 hit, t 1 and o naming it", k, fields, err)
		}
	}
}

func escapeGlob(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}

func TestRedisStore_ReloadsTheScriptAfterScriptFlush(t *testing.T) {
	store := openTestRedisStore(t)
	l := newTestLimiter(t, store)
	admitN(t, l, tenantReq(acmeID), 1)
	if err := store.client.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if got := admitN(t, l, tenantReq(acmeID), 6); got != 4 {
		t.Fatalf("after SCRIPT FLUSH admitted %d, want 4", got)
	}
}

func TestMemoryStore_ExpiresIdleCounters(t *testing.T) {
	now := int64(1_000_000)
	m := NewMemoryStore(WithMemoryClock(func() int64 { return now }))
	w := newWindow(win(10, time.Second))
	for i := range 20000 {
		id := "t" + strconv.Itoa(i)
		if _, err := m.Apply(context.Background(), id, []counter{{Key: keyName(id, "", w), Window: w, Hits: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	before := m.Len()
	now += w.TTLMS() + 1
	for i := range 20000 {
		id := "u" + strconv.Itoa(i)
		if _, err := m.Apply(context.Background(), id, []counter{{Key: keyName(id, "", w), Window: w, Hits: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if after := m.Len(); before != 20000 || after > 30000 {
		t.Fatalf("counters before %d after %d: expired counters were not swept", before, after)
	}
}
