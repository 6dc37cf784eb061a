package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRateLimit_Defaults(t *testing.T) {
	r := Default().RateLimit
	if r.Domain != "tenantgate" || r.Timeout.D() != 50*time.Millisecond || r.OverLimitCacheSize <= 0 ||
		r.Redis.PoolSize <= 0 || r.Redis.KeyPrefix == "" || r.BreakerFailures < 1 || r.BreakerCooldown <= 0 {
		t.Fatalf("defaults %+v", r)
	}
}

func TestRateLimit_BadValuesNameTheirKey(t *testing.T) {
	cases := []struct {
		name, yaml, key string
	}{
		{"empty domain", "ratelimit: {domain: \"\"}", "ratelimit.domain"},
		{"zero timeout", "ratelimit: {timeout: 0s}", "ratelimit.timeout"},
		{"huge timeout", "ratelimit: {timeout: 1m}", "ratelimit.timeout"},
		{"negative cache", "ratelimit: {over_limit_cache_size: -1}", "ratelimit.over_limit_cache_size"},
		{"no breaker failures", "ratelimit: {breaker_failures: 0}", "ratelimit.breaker_failures"},
		{"zero cooldown", "ratelimit: {breaker_cooldown: 0s}", "ratelimit.breaker_cooldown"},
		{"hash tag in prefix", "ratelimit: {redis: {key_prefix: \"a{b}:\"}}", "ratelimit.redis.key_prefix"},
		{"zero pool", "ratelimit: {redis: {pool_size: 0}}", "ratelimit.redis.pool_size"},
		{"idle above pool", "ratelimit: {redis: {pool_size: 4, min_idle_conns: 5}}", "ratelimit.redis.min_idle_conns"},
		{"cluster without url", "ratelimit: {redis: {cluster: true}}", "ratelimit.redis.cluster"},
		{"unknown key", "ratelimit: {redis: {nodes: 3}}", "ratelimit.redis.nodes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, func(string) string { return "" })
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != tc.key {
				t.Fatalf("error %v, want one naming %s", err, tc.key)
			}
		})
	}
}

func TestRateLimit_ClusterSettingsLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "redis_url: redis+cluster://10.0.0.1:6379\nratelimit: {timeout: 20ms, over_limit_cache_size: 0, redis: {pool_size: 16, min_idle_conns: 2}}\n"
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if r := c.RateLimit; r.Timeout.D() != 20*time.Millisecond || r.OverLimitCacheSize != 0 || r.Redis.PoolSize != 16 || r.Redis.MinIdleConns != 2 {
		t.Fatalf("%+v", r)
	}
}
