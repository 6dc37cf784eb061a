package telemetry

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/ratelimit"
)

// countingHook counts the commands and the round trips (a single command or a pipeline) a client
// sends.
type countingHook struct{ commands, roundTrips atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.commands.Add(1)
		h.roundTrips.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.commands.Add(int64(len(cmds)))
		h.roundTrips.Add(1)
		return next(ctx, cmds)
	}
}

// BenchmarkRedisOpsPerDecision measures what one rate-limit decision costs Redis, counted on the
// wire by a client hook: commands and round trips per ShouldRateLimit, for a plan of one window and
// a plan of two (a burst per second and an hourly quota), with one caller at a time and with 64
// concurrent callers (where the store's group commit shares round trips). 1,000 tenants, none over
// its limit.
func BenchmarkRedisOpsPerDecision(b *testing.B) {
	plans := map[string]config.Plan{
		"one-window": {Windows: []config.Window{{Limit: 1 << 40, Period: config.Duration(time.Hour)}}, FailureMode: "open"},
		"two-windows": {Windows: []config.Window{
			{Limit: 1 << 40, Period: config.Duration(time.Second)},
			{Limit: 1 << 40, Period: config.Duration(time.Hour)},
		}, FailureMode: "open"},
	}
	for _, plan := range []string{"one-window", "two-windows"} {
		for _, callers := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/callers=%d", plan, callers), func(b *testing.B) {
				rd := testenv.NewRedis(b)
				opts, err := redis.ParseURL(rd.URL)
				if err != nil {
					b.Fatal(err)
				}
				opts.PoolSize = 16
				client := redis.NewClient(opts)
				defer client.Close()
				count := &countingHook{}
				client.AddHook(count)
				store, err := ratelimit.NewRedisStore(client, rd.Prefix)
				if err != nil {
					b.Fatal(err)
				}
				tenants := make([]*tenant.Tenant, 1000)
				byID := map[string]*tenant.Tenant{}
				for i := range tenants {
					tenants[i] = &tenant.Tenant{ID: tenant.NewID(), Slug: fmt.Sprintf("t%d", i), Plan: plan, Model: tenant.Pool, Status: tenant.Active}
					byID[tenants[i].ID] = tenants[i]
				}
				lim, err := ratelimit.New(ratelimit.Config{Store: store, Plans: plans, Timeout: time.Second,
					Tenants: ratelimit.LookupFunc(func(id string) (*tenant.Tenant, bool) { t, ok := byID[id]; return t, ok })})
				if err != nil {
					b.Fatal(err)
				}
				reqs := make([]*rlsv3.RateLimitRequest, len(tenants))
				for i, t := range tenants {
					reqs[i] = &rlsv3.RateLimitRequest{Domain: "tenantgate", Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{
						{Key: "tenant_id", Value: t.ID}, {Key: "endpoint", Value: "default"}}}}}
				}
				ctx := context.Background()
				if _, err := lim.ShouldRateLimit(ctx, reqs[0]); err != nil { // loads the script
					b.Fatal(err)
				}
				count.commands.Store(0)
				count.roundTrips.Store(0)
				var next atomic.Int64
				b.SetParallelism(max(1, callers/2)) // GOMAXPROCS is 2 here
				if callers == 1 {
					b.SetParallelism(1)
				}
				b.ResetTimer()
				if callers == 1 {
					for i := 0; b.Loop(); i++ {
						if _, err := lim.ShouldRateLimit(ctx, reqs[i%len(reqs)]); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if _, err := lim.ShouldRateLimit(ctx, reqs[next.Add(1)%int64(len(reqs))]); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				b.ReportMetric(float64(count.commands.Load())/float64(b.N), "redis-cmds/decision")
				b.ReportMetric(float64(count.roundTrips.Load())/float64(b.N), "round-trips/decision")
			})
		}
	}
}
