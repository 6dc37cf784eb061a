package config

import (
	"strings"
	"time"
)

// RateLimit configures the rate-limit service. The ratelimit component owns this file.
type RateLimit struct {
	// Domain is the Envoy rate-limit domain answered; other domains are allowed without counting.
	Domain string `yaml:"domain"`
	// Timeout bounds every Redis call (dial, pool wait, read, write).
	Timeout Duration `yaml:"timeout"`
	// OverLimitCacheSize bounds the local cache of counters known to be over their limit (entries);
	// 0 turns the cache off.
	OverLimitCacheSize int `yaml:"over_limit_cache_size"`
	// BreakerFailures consecutive Redis failures make the limiter skip Redis (applying each plan's
	// failure mode at once) for BreakerCooldown, while it probes Redis in the background.
	BreakerFailures int      `yaml:"breaker_failures"`
	BreakerCooldown Duration `yaml:"breaker_cooldown"`
	Redis           Redis    `yaml:"redis"`
}

// Redis configures the rate limiter's Redis client (its URL is the top-level redis_url).
type Redis struct {
	// Cluster treats a redis:// or rediss:// URL as a Redis Cluster seed (redis+cluster:// always is).
	Cluster bool `yaml:"cluster"`
	// KeyPrefix starts every counter key.
	KeyPrefix string `yaml:"key_prefix"`
	// PoolSize is the number of connections per Redis node.
	PoolSize int `yaml:"pool_size"`
	// MinIdleConns connections are kept open, so that a burst or the first call after an outage
	// does not wait to dial.
	MinIdleConns int `yaml:"min_idle_conns"`
}

func defaultRateLimit() RateLimit {
	return RateLimit{
		Domain:             "tenantgate",
		Timeout:            Duration(50 * time.Millisecond),
		OverLimitCacheSize: 100000,
		BreakerFailures:    3,
		BreakerCooldown:    Duration(250 * time.Millisecond),
		Redis:              Redis{KeyPrefix: "tenantgate:rl:", PoolSize: 64, MinIdleConns: 8},
	}
}

func (r RateLimit) validate(key string, c *Config) error {
	if r.Domain == "" {
		return keyErr(key+".domain", "must not be empty")
	}
	if r.Timeout <= 0 || r.Timeout.D() > 5*time.Second {
		return keyErr(key+".timeout", "must be positive and at most 5s (got %s)", r.Timeout.D())
	}
	if r.OverLimitCacheSize < 0 || r.OverLimitCacheSize > 10_000_000 {
		return keyErr(key+".over_limit_cache_size", "must be between 0 (off) and 10000000 (got %d)", r.OverLimitCacheSize)
	}
	if r.BreakerFailures < 1 {
		return keyErr(key+".breaker_failures", "must be at least 1 (got %d)", r.BreakerFailures)
	}
	if r.BreakerCooldown <= 0 {
		return keyErr(key+".breaker_cooldown", "must be positive")
	}
	if strings.ContainsAny(r.Redis.KeyPrefix, "{} ") {
		return keyErr(key+".redis.key_prefix", "must not contain '{', '}' or spaces (the tenant is the key's hash tag)")
	}
	if r.Redis.PoolSize < 1 || r.Redis.PoolSize > 10000 {
		return keyErr(key+".redis.pool_size", "must be between 1 and 10000 (got %d)", r.Redis.PoolSize)
	}
	if r.Redis.MinIdleConns < 0 || r.Redis.MinIdleConns > r.Redis.PoolSize {
		return keyErr(key+".redis.min_idle_conns", "must be between 0 and redis.pool_size (got %d)", r.Redis.MinIdleConns)
	}
	if r.Redis.Cluster && c.RedisURL == "" {
		return keyErr(key+".redis.cluster", "needs redis_url (or TENANTGATE_REDIS_URL)")
	}
	return nil
}
