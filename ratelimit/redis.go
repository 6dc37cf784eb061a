package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// applyScript decides one request: see window.go for the algorithm and its proof. It reads the clock
// of the Redis server (TIME), so every replica sharing the Redis decides on one clock, and runs
// atomically, so decisions on a key are made in time order.
//
//go:embed apply.lua
var applyScript string

// RedisStore keeps the counters in Redis (a single server or a cluster).
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	script *redis.Script
}

// NewRedisStore returns a store on client whose keys all start with prefix (which must not hold a
// '{', so the tenant's hash tag is the first one in every key).
func NewRedisStore(client redis.UniversalClient, prefix string) (*RedisStore, error) {
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis key prefix %q must not contain { or }", prefix)
	}
	return &RedisStore{client: client, prefix: prefix, script: redis.NewScript(applyScript)}, nil
}

// Apply implements Store: one EVALSHA (EVAL once after a NOSCRIPT) for every counter of the request.
func (r *RedisStore) Apply(ctx context.Context, _ string, counters []counter) (applied, error) {
	keys := make([]string, len(counters))
	args := make([]any, 0, 5*len(counters))
	for i, c := range counters {
		keys[i] = r.prefix + c.Key
		args = append(args, c.Window.SubMS, c.Window.PeriodMS, c.Window.Limit, c.Hits, c.Window.TTLMS())
	}
	res, err := r.script.Run(ctx, r.client, keys, args...).Int64Slice()
	if err != nil {
		return applied{}, fmt.Errorf("redis rate-limit script: %w", err)
	}
	if len(res) != 2+2*len(counters) {
		return applied{}, fmt.Errorf("redis rate-limit script: %d values in reply, want %d", len(res), 2+2*len(counters))
	}
	out := applied{NowMS: res[0], Admitted: res[1] == 1, Counts: make([]count, len(counters))}
	for i := range counters {
		out.Counts[i] = count{Used: res[2+2*i], Oldest: res[3+2*i]}
	}
	return out, nil
}

// PurgeTenant implements Store: it deletes every key of the tenant, on every master of a cluster.
func (r *RedisStore) PurgeTenant(ctx context.Context, tenantID string) error {
	pattern := escapeGlob(r.prefix+tenantKeyPrefix(tenantID)) + "*"
	purge := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 500).Iterator()
		var batch []string
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		// The keys share one hash tag, hence one slot: one DEL serves them all.
		if len(batch) > 0 {
			return c.Del(ctx, batch...).Err()
		}
		return nil
	}
	var err error
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return purge(ctx, c) })
	} else {
		err = purge(ctx, r.client)
	}
	if err != nil {
		return fmt.Errorf("purge rate-limit counters of tenant %s: %w", tenantID, err)
	}
	return nil
}

// Ping implements Store.
func (r *RedisStore) Ping(ctx context.Context) error {
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	}
	return r.client.Ping(ctx).Err()
}

func escapeGlob(s string) string {
	return strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`).Replace(s)
}

// RedisOptions are the client settings that keep every call within its deadline.
type RedisOptions struct {
	// URL is redis://, rediss:// (one server) or redis+cluster:// (a cluster; more seed nodes as
	// addr=host:port query parameters).
	URL string
	// Cluster forces cluster mode for a redis:// or rediss:// URL.
	Cluster bool
	// Timeout bounds dialling, reading, writing and waiting for a pooled connection.
	Timeout      time.Duration
	PoolSize     int
	MinIdleConns int
}

// OpenRedis builds a client for the rate limiter: no retries (a retry would overrun the deadline), the
// context's deadline honoured on the socket, dial/read/write/pool timeouts at Timeout, and idle
// connections kept open so that the first call after an outage does not have to dial.
func OpenRedis(o RedisOptions) (redis.UniversalClient, error) {
	raw, cluster := o.URL, o.Cluster
	if rest, ok := strings.CutPrefix(raw, "redis+cluster://"); ok {
		raw, cluster = "redis://"+rest, true
	}
	if cluster {
		opts, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, fmt.Errorf("redis cluster url: %w", err)
		}
		opts.MaxRetries = -1
		opts.MaxRedirects = 2
		opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
		opts.DialerRetries = 1
		opts.ContextTimeoutEnabled = true
		if o.PoolSize > 0 {
			opts.PoolSize = o.PoolSize
		}
		opts.MinIdleConns = o.MinIdleConns
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	opts.MaxRetries = -1
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opts.DialerRetries = 1
	opts.ContextTimeoutEnabled = true
	if o.PoolSize > 0 {
		opts.PoolSize = o.PoolSize
	}
	opts.MinIdleConns = o.MinIdleConns
	return redis.NewClient(opts), nil
}
