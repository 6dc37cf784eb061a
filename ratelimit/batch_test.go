package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/config"
)

// scriptCounter counts the rate-limit script calls a client sends, pipelined or not.
type scriptCounter struct{ calls atomic.Int64 }

func (h *scriptCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scriptCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}

func (h *scriptCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (h *scriptCounter) count(cmd redis.Cmder) {
	if n := cmd.Name(); n == "evalsha" || n == "eval" {
		h.calls.Add(1)
	}
}

// TestRedisStore_ABatchDecidesEachRequestAlone sends many concurrent requests of several tenants,
// of one and two counters, so that they share script calls (on a cluster, one call per tenant of a
// batch: a script's keys must share a slot). Each request must still be decided alone and
// atomically: every tenant gets exactly its limit, and its admitted requests saw the counts 0, 1,
// ..., limit-1 once each, as if one after another.
func TestRedisStore_ABatchDecidesEachRequestAlone(t *testing.T) {
	tests := []struct {
		name string
		open func(t *testing.T) *RedisStore
	}{
		{"single server", func(t *testing.T) *RedisStore { return openTestRedisStore(t) }},
		{"cluster", openClusterStore},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := tc.open(t)
			calls := &scriptCounter{}
			store.client.AddHook(calls)

			const tenants, callers = 8, 64
			type request struct {
				tenant   string
				limit    int64
				counters []counter
			}
			var reqs []request
			for i := range tenants {
				id := fmt.Sprintf("0b0a7c4e-0000-4000-8000-%012d", i)
				limit := int64(5 + i)
				own := newWindow(config.Window{Limit: limit, Period: config.Duration(time.Minute)})
				endpoint := newWindow(config.Window{Limit: 1000, Period: config.Duration(time.Hour)})
				cs := []counter{{Key: keyName(id, "", own), Window: own, Hits: 1}}
				if i%2 == 1 { // and a second counter, which never refuses
					cs = append(cs, counter{Key: keyName(id, "orders", endpoint), Window: endpoint, Hits: 1})
				}
				for range 3 * limit {
					reqs = append(reqs, request{tenant: id, limit: limit, counters: cs})
				}
			}
			// The first call of a cluster that has just formed can be slow: warm the client up.
			if err := store.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			calls.calls.Store(0)

			var mu sync.Mutex
			admittedUsed := map[string][]int64{} // tenant -> the counts its admitted requests saw
			var wg sync.WaitGroup
			start := make(chan struct{})
			next := atomic.Int64{}
			for range callers {
				wg.Go(func() {
					<-start
					for {
						i := int(next.Add(1)) - 1
						if i >= len(reqs) {
							return
						}
						q := reqs[i]
						ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
						res, err := store.Apply(ctx, q.tenant, q.counters)
						cancel()
						if err != nil {
							t.Errorf("apply: %v", err)
							return
						}
						if len(res.Counts) != len(q.counters) {
							t.Errorf("%d counts for %d counters", len(res.Counts), len(q.counters))
							return
						}
						if res.Admitted {
							mu.Lock()
							admittedUsed[q.tenant] = append(admittedUsed[q.tenant], res.Counts[0].Used)
							mu.Unlock()
						}
					}
				})
			}
			close(start)
			wg.Wait()
			if t.Failed() {
				return
			}
			for i := range tenants {
				id := fmt.Sprintf("0b0a7c4e-0000-4000-8000-%012d", i)
				limit := int64(5 + i)
				used := admittedUsed[id]
				slices.Sort(used)
				want := make([]int64, limit)
				for j := range want {
					want[j] = int64(j)
				}
				if !slices.Equal(used, want) {
					t.Errorf("tenant %d (limit %d): admitted requests saw counts %v, want %v", i, limit, used, want)
				}
			}
			// Otherwise every batch held one request and this test proved nothing about batches.
			if n := calls.calls.Load(); n >= int64(len(reqs)) {
				t.Errorf("%d script calls for %d requests: no batch held two", n, len(reqs))
			} else {
				t.Logf("%d script calls for %d requests", n, len(reqs))
			}
		})
	}
}

// TestRedisStore_CounterKeepsItsTotalAndOldest checks the bookkeeping that spares a decision from
// reading every sub-window: after every decision, a counter's 't' is the sum of its sub-windows, 'o'
// the oldest of them, none has left the window, and the count the decision saw is the total before
// its hits. Traffic has gaps of a few sub-windows and pauses longer than the window, so sub-windows
// leave one by one, several at once, and all at once. Also: a counter written before 't' and 'o'
// were kept is counted in full, and one whose oldest sub-window is further back than a window can
// hold (only a clock step could do that) starts again.
func TestRedisStore_CounterKeepsItsTotalAndOldest(t *testing.T) {
	store := openTestRedisStore(t)
	ctx := context.Background()
	w := newWindow(config.Window{Limit: 1_000_000, Period: config.Duration(600 * time.Millisecond)}) // g = 10ms
	const id = "0c0a7c4e-0000-4000-8000-000000000001"
	c := counter{Key: keyName(id, "", w), Window: w}
	key := store.prefix + c.Key

	check := func(step string, res applied, hits int64) {
		t.Helper()
		fields, err := store.client.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var sum, oldest int64 = 0, -1
		for f, v := range fields {
			if f == "t" || f == "o" {
				continue
			}
			b, n := mustInt(t, f), mustInt(t, v)
			sum += n
			if oldest < 0 || b < oldest {
				oldest = b
			}
			if b < w.first(res.NowMS) {
				t.Errorf("%s: sub-window %d left the window (first %d) but is still stored", step, b, w.first(res.NowMS))
			}
		}
		if got := mustInt(t, fields["t"]); got != sum {
			t.Errorf("%s: t = %d, the sub-windows hold %d (%v)", step, got, sum, fields)
		}
		if got := mustInt(t, fields["o"]); got != oldest {
			t.Errorf("%s: o = %d, the oldest sub-window is %d (%v)", step, got, oldest, fields)
		}
		if res.Counts[0].Used+hits != sum {
			t.Errorf("%s: the decision saw %d before its %d hits, the counter now holds %d", step, res.Counts[0].Used, hits, sum)
		}
	}
	apply := func(hits int64) applied {
		t.Helper()
		c.Hits = hits
		res, err := store.Apply(ctx, id, []counter{c})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Admitted {
			t.Fatal("refused under a limit of a million")
		}
		return res
	}

	// Rounds of twice the window with gaps of 0-4 sub-windows, each after a pause longer than the
	// window.
	gaps := []time.Duration{0, 3, 10, 0, 25, 40, 1, 5, 15, 0, 35, 12, 8, 20, 0, 45, 30, 10}
	for round := range 3 {
		time.Sleep(700 * time.Millisecond)
		start := time.Now()
		for i := 0; time.Since(start) < 2*w.Period(); i++ {
			time.Sleep(gaps[i%len(gaps)] * time.Millisecond)
			hits := int64(1 + (i+round)%3)
			check(fmt.Sprintf("round %d, decision %d", round, i), apply(hits), hits)
		}
	}

	// A counter from before 't' and 'o': sub-windows only, one of them still in the window.
	now := apply(1).NowMS
	if err := store.client.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	cur := w.bucket(now)
	if err := store.client.HSet(ctx, key, cur, 7, cur-1, 5).Err(); err != nil {
		t.Fatal(err)
	}
	if res := apply(1); res.Counts[0].Used != 12 || res.Counts[0].Oldest != cur-1 {
		t.Errorf("a counter from before t and o: saw %+v, want 12 used, oldest %d", res.Counts[0], cur-1)
	} else {
		check("after the rebuild", res, 1)
	}

	// An oldest sub-window further back than any window holds: everything has left.
	if err := store.client.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	if err := store.client.HSet(ctx, key, "o", cur-1000, cur-1000, 9, "t", 9).Err(); err != nil {
		t.Fatal(err)
	}
	if res := apply(1); res.Counts[0].Used != 0 {
		t.Errorf("after a clock step: saw %d used, want 0", res.Counts[0].Used)
	} else {
		check("after a clock step", res, 1)
	}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%q is not an integer", s)
	}
	return n
}
