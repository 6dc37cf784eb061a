package ratelimit

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// applyScript decides one request: see window.go for the algorithm and its proof. It reads the clock
// of the Redis server (TIME), so every replica sharing the Redis decides on one clock, and runs
// atomically, so decisions on a key are made in time order.
//
//go:embed apply.lua
var applyScript string

// RedisStore keeps the counters in Redis (a single server or a cluster). Concurrent decisions are
// sent together: each is one EVALSHA, and the calls waiting while a batch is on the wire go out as the
// next pipeline (group commit), so that under load a decision costs a fraction of a round trip's
// system calls. Every script still runs atomically on its own.
type RedisStore struct {
	client  redis.UniversalClient
	prefix  string
	script  *redis.Script
	timeout time.Duration

	mu       sync.Mutex
	pending  []*redisCall
	flushers int
}

// Bounds of the pipelining: batches in flight at once, and calls per batch.
const (
	maxFlushers = 4
	maxBatch    = 128
)

// redisCall is one decision waiting for its batch.
type redisCall struct {
	ctx  context.Context
	keys []string
	args []any
	res  []int64
	err  error
	done chan struct{}
}

// RedisStoreOption configures a RedisStore.
type RedisStoreOption func(*RedisStore)

// WithRedisTimeout bounds a pipeline whose callers set no deadline (default 50ms). Otherwise a
// pipeline lasts until the latest deadline of its callers, and each caller waits until its own.
func WithRedisTimeout(d time.Duration) RedisStoreOption {
	return func(r *RedisStore) { r.timeout = d }
}

// NewRedisStore returns a store on client whose keys all start with prefix (which must not hold a
// '{', so the tenant's hash tag is the first one in every key).
func NewRedisStore(client redis.UniversalClient, prefix string, opts ...RedisStoreOption) (*RedisStore, error) {
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis key prefix %q must not contain { or }", prefix)
	}
	r := &RedisStore{client: client, prefix: prefix, script: redis.NewScript(applyScript), timeout: 50 * time.Millisecond}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Apply implements Store: one script call (EVALSHA; EVAL after a NOSCRIPT) for every counter of the
// request, sent in the next pipeline. It returns when the answer comes or ctx ends, whichever is
// first.
func (r *RedisStore) Apply(ctx context.Context, tenantID string, counters []counter) (applied, error) {
	c := &redisCall{ctx: ctx, keys: make([]string, len(counters)+1), args: make([]any, 0, 5*len(counters)), done: make(chan struct{})}
	for i, k := range counters {
		c.keys[i] = r.prefix + k.Key
		c.args = append(c.args, k.Window.SubMS, k.Window.PeriodMS, k.Window.Limit, k.Hits, k.Window.TTLMS())
	}
	c.keys[len(counters)] = r.indexKey(tenantID)
	r.mu.Lock()
	r.pending = append(r.pending, c)
	flusher := r.flushers < maxFlushers
	if flusher {
		r.flushers++
	}
	r.mu.Unlock()
	if flusher {
		// This caller sends the batch holding its own call (no goroutine to start and grow a stack
		// for), then hands what waits to a background flusher.
		r.flush(c)
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return applied{}, fmt.Errorf("redis rate-limit script: %w", ctx.Err())
	}
	if c.err != nil {
		return applied{}, fmt.Errorf("redis rate-limit script: %w", c.err)
	}
	res := c.res
	if len(res) != 2+2*len(counters) {
		return applied{}, fmt.Errorf("redis rate-limit script: %d values in reply, want %d", len(res), 2+2*len(counters))
	}
	out := applied{NowMS: res[0], Admitted: res[1] == 1, Counts: make([]count, len(counters))}
	for i := range counters {
		out.Counts[i] = count{Used: res[2+2*i], Oldest: res[3+2*i]}
	}
	return out, nil
}

// flush sends the waiting calls, a batch at a time. Called by a caller (own != nil), it returns once
// the caller's call is answered or its context ends, leaving what still waits to a background
// flusher; in the background (own == nil), it returns when none wait. At most maxFlushers run, and
// each pipeline is bounded by its callers' deadlines.
func (r *RedisStore) flush(own *redisCall) {
	for {
		r.mu.Lock()
		n := min(len(r.pending), maxBatch)
		if n == 0 {
			r.flushers--
			r.mu.Unlock()
			return
		}
		if own != nil && (isDone(own.done) || own.ctx.Err() != nil) {
			r.mu.Unlock()
			go r.flush(nil)
			return
		}
		batch := make([]*redisCall, n)
		copy(batch, r.pending)
		r.pending = append(r.pending[:0], r.pending[n:]...)
		r.mu.Unlock()
		r.send(batch)
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// send runs one batch as a pipeline; a call whose caller has given up is not sent (its hits would
// count for an answer nobody reads).
func (r *RedisStore) send(batch []*redisCall) {
	live := batch[:0:0]
	var deadline time.Time
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			close(c.done)
			continue
		}
		live = append(live, c)
		d, ok := c.ctx.Deadline()
		if !ok {
			d = time.Now().Add(r.timeout)
		}
		if d.After(deadline) {
			deadline = d
		}
	}
	if len(live) == 0 {
		return
	}
	// The pipeline lives as long as its most patient caller; each caller stops waiting at its own
	// deadline.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmds := make([]*redis.Cmd, len(live))
	if len(live) == 1 {
		cmds[0] = r.script.Run(ctx, r.client, live[0].keys, live[0].args...)
	} else {
		pipe := r.client.Pipeline()
		for i, c := range live {
			cmds[i] = r.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for i, c := range live {
		if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// The script cache was flushed (or this is a new node): EVAL loads it again.
			cmds[i] = r.script.Run(ctx, r.client, c.keys, c.args...)
		}
		c.res, c.err = cmds[i].Int64Slice()
		close(c.done)
	}
}

// indexKey is the set naming every counter key of the tenant (in the tenant's slot; "index" is never
// a window length, so it cannot clash with a counter).
func (r *RedisStore) indexKey(tenantID string) string {
	return r.prefix + tenantKeyPrefix(tenantID) + "index"
}

// PurgeTenant implements Store: it deletes every counter the tenant's index names, and the index. All
// of them share the tenant's hash tag, so one DEL serves them on a cluster too; no key scan.
func (r *RedisStore) PurgeTenant(ctx context.Context, tenantID string) error {
	index := r.indexKey(tenantID)
	keys, err := r.client.SMembers(ctx, index).Result()
	if err == nil {
		err = r.client.Del(ctx, append(keys, index)...).Err()
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
		opts.Protocol = 2 // RESP2: no push notifications to look for before every command
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
	opts.Protocol = 2 // RESP2: no push notifications to look for before every command
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = o.Timeout, o.Timeout, o.Timeout, o.Timeout
	opts.DialerRetries = 1
	opts.ContextTimeoutEnabled = true
	if o.PoolSize > 0 {
		opts.PoolSize = o.PoolSize
	}
	opts.MinIdleConns = o.MinIdleConns
	return redis.NewClient(opts), nil
}
