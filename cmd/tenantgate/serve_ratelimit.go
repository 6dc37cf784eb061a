package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/telemetry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/ratelimit"
)

// setupRateLimit registers envoy.service.ratelimit.v3.RateLimitService on the gRPC server, with its
// counters in Redis when redis_url is set (redis+cluster:// or ratelimit.redis.cluster for a
// cluster) and in memory otherwise. It adds a readiness check that says when Redis is down, and
// purges the counters of tenants the snapshot shows deleted.
func setupRateLimit(_ context.Context, a *app) error {
	log := a.log.With(slog.String("component", "ratelimit"))
	rc := a.cfg.RateLimit
	var store ratelimit.Store
	if a.cfg.RedisURL != "" {
		// go-redis logs each failed dial on its own; route that through slog at debug level (the
		// limiter logs the outage once, at warn).
		redis.SetLogger(redisLogger{log})
		client, err := ratelimit.OpenRedis(ratelimit.RedisOptions{
			URL:          a.cfg.RedisURL.Value(),
			Cluster:      rc.Redis.Cluster,
			Timeout:      rc.Timeout.D(),
			PoolSize:     rc.Redis.PoolSize,
			MinIdleConns: rc.Redis.MinIdleConns,
		})
		if err != nil {
			return fmt.Errorf("redis_url: %w", err)
		}
		a.closers = append(a.closers, func() { _ = client.Close() })
		hook, err := telemetry.NewRedisHook(a.metrics)
		if err != nil {
			return err
		}
		client.AddHook(hook)
		rs, err := ratelimit.NewRedisStore(client, rc.Redis.KeyPrefix, ratelimit.WithRedisTimeout(rc.Timeout.D()))
		if err != nil {
			return err
		}
		store = rs
		log.Info("rate-limit counters in Redis", slog.Any("redis_url", a.cfg.RedisURL))
	} else {
		store = ratelimit.NewMemoryStore()
		log.Info("rate-limit counters in memory (no redis_url): each replica counts alone")
	}
	lim, err := ratelimit.New(ratelimit.Config{
		Store:              store,
		Plans:              a.cfg.Plans,
		Tenants:            ratelimit.LookupFunc(func(id string) (*tenant.Tenant, bool) { return a.tenants.Load().ByID(id) }),
		Domain:             rc.Domain,
		Timeout:            rc.Timeout.D(),
		OverLimitCacheSize: rc.OverLimitCacheSize,
		BreakerFailures:    rc.BreakerFailures,
		BreakerCooldown:    rc.BreakerCooldown.D(),
		Metrics:            a.metrics,
		Log:                log,
	})
	if err != nil {
		return err
	}
	lim.Register(a.grpc)
	a.tenants.Subscribe(lim.TenantsChanged)
	a.runners = append(a.runners, lim.Run)
	if a.cfg.RedisURL != "" {
		a.addDegradingCheck("ratelimit redis", lim.Ping, "each plan's failure mode decides")
	}
	return nil
}

// redisLogger adapts slog to go-redis's internal logger.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
