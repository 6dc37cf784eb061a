package ratelimit

import (
	"context"
	"fmt"
	"slices"
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
		open func(t *testing.T) (*RedisStore, redis.UniversalClient)
	}{
		{"single server", func(t *testing.T) (*RedisStore, redis.UniversalClient) {
			s := openTestRedisStore(t)
			return s, s.client
		}},
		{"cluster", func(t *testing.T) (*RedisStore, redis.UniversalClient) {
			nodes := startRedisCluster(t)
			client, err := OpenRedis(RedisOptions{URL: "redis+cluster://" + nodes[0].addr() + "?addr=" + nodes[1].addr(), Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { client.Close() })
			s, err := NewRedisStore(client, "tgbatch:")
			if err != nil {
				t.Fatal(err)
			}
			return s, client
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, client := tc.open(t)
			calls := &scriptCounter{}
			client.AddHook(calls)

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
