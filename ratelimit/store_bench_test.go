package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

// BenchmarkStoreApply measures a store's Apply alone, from 64 concurrent callers (as under gRPC load):
// the service CPU per decision the store adds, and its allocations.
func BenchmarkStoreApply(b *testing.B) {
	w := newWindow(config.Window{Limit: 1_000_000_000, Period: config.Duration(time.Hour)})
	const id = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
	for _, st := range []string{"memory", "redis"} {
		b.Run(st, func(b *testing.B) {
			var store Store = NewMemoryStore()
			if st == "redis" {
				store = openBenchRedisStore(b)
			}
			counters := []counter{{Key: keyName(id, "", w), Window: w, Hits: 1}}
			b.SetParallelism(32)
			b.ReportAllocs()
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					if _, err := store.Apply(ctx, id, counters); err != nil {
						b.Error(err)
					}
					cancel()
				}
			})
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N)/1000, "us-cpu/op")
		})
	}
}
