package ratelimit

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// attempt is one decision as the store made it: when (store clock, ms) and whether it was admitted.
type attempt struct {
	at       int64
	admitted bool
}

// exactnessPlan has the two short windows, 20 per 2s and 5 per 500ms.
func exactnessPlan() map[string]config.Plan {
	return map[string]config.Plan{"burst": {
		Windows:     []config.Window{win(20, 2*time.Second), win(5, 500*time.Millisecond)},
		FailureMode: "closed",
	}}
}

// TestExactness_ConcurrentInstancesNeverOverAdmit runs four limiter instances sharing one store, with
// many concurrent clients of one tenant for a few seconds, then checks the recorded admission times
// (the store's clock at each decision): no interval of length W holds more than the limit, and the
// total admitted is no less than an exact sliding log with windows one sub-window longer would admit
// from the same attempts.
func TestExactness_ConcurrentInstancesNeverOverAdmit(t *testing.T) {
	cases := []struct {
		name   string
		stores func(t *testing.T) []Store // one per instance, sharing counters
	}{
		{"redis", func(t *testing.T) []Store {
			r := testenv.NewRedis(t)
			out := make([]Store, 4)
			for i := range out {
				// Each instance its own client (own connection pool), as separate replicas have.
				client, err := OpenRedis(RedisOptions{URL: r.URL, Timeout: time.Second, PoolSize: 16})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { client.Close() })
				s, err := NewRedisStore(client, r.Prefix)
				if err != nil {
					t.Fatal(err)
				}
				out[i] = s
			}
			return out
		}},
		{"memory", func(*testing.T) []Store {
			m := NewMemoryStore()
			return []Store{m, m, m, m}
		}},
	}
	// Saturated: clients pause 0-4ms, so freed quota is taken the moment a sub-window leaves.
	// Sparse: about 5 times the limit's rate in random arrivals, so admissions fall anywhere in a
	// sub-window (where a window that drops its oldest sub-window too early would over-admit).
	loads := []struct {
		name  string
		pause func() time.Duration
	}{
		{"saturated", func() time.Duration { return time.Duration(rand.IntN(4000)) * time.Microsecond }},
		{"sparse", func() time.Duration { return time.Duration(rand.ExpFloat64() * float64(480*time.Millisecond)) }},
	}
	for _, tc := range cases {
		for _, load := range loads {
			t.Run(tc.name+"/"+load.name, func(t *testing.T) {
				t.Parallel()
				const id = "0b7e0a2c-1d3f-4b5a-9c6d-7e8f9a0b1c2d"
				tenants := lookup([]tenant.Tenant{{ID: id, Slug: "exact", Plan: "burst", Status: tenant.Active}})
				var limiters []*Limiter
				for _, s := range tc.stores(t) {
					limiters = append(limiters, newTestLimiter(t, s, func(c *Config) {
						c.Plans, c.Tenants, c.Timeout = exactnessPlan(), tenants, time.Second
					}))
				}
				attempts := runClients(t, limiters, id, 24, 5*time.Second, load.pause)
				windows := limiters[0].plans.byName["burst"].Windows
				checkNeverOverAdmits(t, attempts, windows)
				checkCloseToIdeal(t, attempts, windows)
			})
		}
	}
}

// runClients has clients clients spread over the limiters send requests for d, each pausing between
// requests, and returns every decision made by the store or the over-limit cache.
func runClients(t *testing.T, limiters []*Limiter, tenantID string, clients int, d time.Duration, pause func() time.Duration) []attempt {
	t.Helper()
	var mu sync.Mutex
	var all []attempt
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for c := range clients {
		l := limiters[c%len(limiters)]
		wg.Go(func() {
			var mine []attempt
			for time.Now().Before(deadline) {
				q := l.parse(tenantReq(tenantID))
				dec, err := l.decide(context.Background(), q)
				if err != nil {
					t.Errorf("decide: %v", err)
					return
				}
				if dec.Outcome != fromStore && dec.Outcome != fromCache {
					t.Errorf("decision from %v, want the store or the cache", dec.Outcome)
					return
				}
				mine = append(mine, attempt{at: dec.NowMS, admitted: dec.Admitted})
				time.Sleep(min(pause(), time.Until(deadline)))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortStableFunc(all, func(a, b attempt) int { return int(a.at - b.at) })
	return all
}

// checkNeverOverAdmits: for every window, no interval (s, s+W] holds more than the limit admitted.
func checkNeverOverAdmits(t *testing.T, attempts []attempt, windows []window) {
	t.Helper()
	var admitted []int64
	for _, a := range attempts {
		if a.admitted {
			admitted = append(admitted, a.at)
		}
	}
	for _, w := range windows {
		worst, lo := 0, 0
		for hi, at := range admitted {
			for admitted[lo] <= at-w.PeriodMS {
				lo++
			}
			worst = max(worst, hi-lo+1)
		}
		t.Logf("window %d/%v: %d admitted of %d attempts; the fullest interval of length W held %d",
			w.Limit, w.Period(), len(admitted), len(attempts), worst)
		if int64(worst) > w.Limit {
			t.Errorf("window %d/%v over-admitted: %d in one interval of length W", w.Limit, w.Period(), worst)
		}
	}
}

// checkCloseToIdeal: the limiter admitted at least what an exact sliding log with every window one
// sub-window longer admits from the same attempts (under-admission bounded by a sub-window), less one
// for attempts in the same millisecond, whose order the replay cannot know.
func checkCloseToIdeal(t *testing.T, attempts []attempt, windows []window) {
	t.Helper()
	got := 0
	for _, a := range attempts {
		if a.admitted {
			got++
		}
	}
	longer := make([]window, len(windows))
	for i, w := range windows {
		longer[i] = w
		longer[i].PeriodMS += w.SubMS
	}
	low, exact := idealLog(attempts, longer), idealLog(attempts, windows)
	t.Logf("admitted %d; an exact sliding log admits %d with W, %d with W+g", got, exact, low)
	if got < low-1 {
		t.Errorf("admitted %d, fewer than an exact log with windows one sub-window longer (%d)", got, low)
	}
}

// idealLog replays the attempts through an exact sliding log (every admission remembered).
func idealLog(attempts []attempt, windows []window) int {
	var log []int64
	for _, a := range attempts {
		ok := true
		for _, w := range windows {
			n := 0
			for i := len(log) - 1; i >= 0 && log[i] > a.at-w.PeriodMS; i-- {
				n++
			}
			if int64(n) >= w.Limit {
				ok = false
				break
			}
		}
		if ok {
			log = append(log, a.at)
		}
	}
	return len(log)
}
