package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

// BenchmarkStoreApply measures a store's Apply alone, from 64 concurrent callers (as under gRPC load):
// the service CPU per decision the store adds, and its allocations. redis-raw is the baseline: the
// same script sent by go-redis on its own (one EvalSha per caller, no group commit), so the ratio of
// redis to redis-raw, measured side by side, is what the group commit saves. redis-full-window is
// a window all of whose sub-windows hold hits (600ms long: 60 sub-windows of 10ms), as any window is
// under steady traffic; the others are hourly, and a run that lasts seconds fills one or two.
//
//	go test ./ratelimit -run '^$' -bench StoreApply -benchtime 40000x -count 3
func BenchmarkStoreApply(b *testing.B) {
	w := newWindow(config.Window{Limit: 1_000_000_000, Period: config.Duration(time.Hour)})
	const id = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	counters := []counter{{Key: keyName(id, "", w), Window: w, Hits: 1}}
	// A window short enough that every sub-window holds hits during the run, as under steady traffic.
	full := newWindow(config.Window{Limit: 1_000_000_000, Period: config.Duration(600 * time.Millisecond)})
	fullCounters := []counter{{Key: keyName(id, "", full), Window: full, Hits: 1}}
	for _, st := range []string{"memory", "redis", "redis-full-window", "redis-raw"} {
		b.Run(st, func(b *testing.B) {
			var apply func(ctx context.Context) error
			switch st {
			case "memory":
				m := NewMemoryStore()
				apply = func(ctx context.Context) error { _, err := m.Apply(ctx, id, counters); return err }
			case "redis":
				r := openBenchRedisStore(b)
				apply = func(ctx context.Context) error { _, err := r.Apply(ctx, id, counters); return err }
			case "redis-full-window":
				r := openBenchRedisStore(b)
				apply = func(ctx context.Context) error { _, err := r.Apply(ctx, id, fullCounters); return err }
			case "redis-raw":
				r := openBenchRedisStore(b)
				if _, err := r.Apply(context.Background(), id, counters); err != nil { // loads the script
					b.Fatal(err)
				}
				keys := []string{r.prefix + counters[0].Key, r.indexKey(id)}
				wa := r.args.get(w)
				sha := r.sha.(string)
				apply = func(ctx context.Context) error {
					// A batch of one request of one counter (apply.lua).
					return r.client.EvalSha(ctx, sha, keys, 1, 1, wa[0], wa[1], wa[2], 1, wa[3]).Err()
				}
			}
			b.SetParallelism(32)
			b.ReportAllocs()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					if err := apply(ctx); err != nil {
						b.Error(err)
					}
					cancel()
				}
			})
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/1000, "us-cpu/op")
		})
	}
}
