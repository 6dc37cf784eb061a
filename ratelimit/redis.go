package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
// sent together (group commit): the calls waiting while a batch is on the wire go out as the next
// batch, one script call deciding them all (on a cluster, one per tenant, since a script's keys must
// share a slot, in one pipeline). Under load a decision then costs a fraction of a round trip's
// system calls and of Redis's per-command and per-script work; each is still decided atomically.
type RedisStore struct {
	client  redis.UniversalClient
	cluster bool // one script call per tenant in a batch
	prefix  string
	sha     any // the apply script's SHA-1, boxed once
	timeout time.Duration
	args    windowArgCache

	mu       sync.Mutex
	pending  []*redisCall
	flushers int
}

// Bounds of the group commit: batches in flight at once, and calls per batch.
const (
	maxFlushers = 4
	maxBatch    = 128
)

// redisCall is one decision waiting for its batch. Calls are reused (callPool) once their caller has
// read the answer; a call whose caller gave up is left to the garbage collector, since its batch may
// still write to it.
type redisCall struct {
	ctx      context.Context
	deadline time.Time
	tenantID string
	// keys are the request's counter keys, then its tenant's index; argv its counter count, then
	// five script arguments per counter (see apply.lua).
	keys, argv []any
	reply      string // its answer in the batch's reply
	err        error
	done       chan struct{} // one value when answered
	timer      *time.Timer   // fires at the deadline
}

var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &redisCall{done: make(chan struct{}, 1), timer: t}
}}

// RedisStoreOption configures a RedisStore.
type RedisStoreOption func(*RedisStore)

// WithRedisTimeout bounds a call whose caller sets no deadline (default 50ms). Otherwise a
// batch lasts until the latest deadline of its callers, and each caller waits until its own.
func WithRedisTimeout(d time.Duration) RedisStoreOption {
	return func(r *RedisStore) { r.timeout = d }
}

// NewRedisStore returns a store on client whose keys all start with prefix (which must not hold a
// '{', so the tenant's hash tag is the first one in every key).
func NewRedisStore(client redis.UniversalClient, prefix string, opts ...RedisStoreOption) (*RedisStore, error) {
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis key prefix %q must not contain { or }", prefix)
	}
	_, cluster := client.(*redis.ClusterClient)
	r := &RedisStore{client: client, cluster: cluster, prefix: prefix, sha: redis.NewScript(applyScript).Hash(), timeout: 50 * time.Millisecond}
	for _, o := range opts {
		o(r)
	}
	return r, nil
}

// Apply implements Store: the request joins the next batch, one script call (EVALSHA; EVAL after a
// NOSCRIPT) for the batch's requests. It returns when the answer comes, ctx ends or its deadline
// (ctx's, else the store's timeout) passes, whichever is first.
func (r *RedisStore) Apply(ctx context.Context, tenantID string, counters []counter) (applied, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(r.timeout)
	}
	return r.applyBy(ctx, deadline, tenantID, counters)
}

// applyBy implements deadlineStore: Apply bounded by deadline, or by ctx's deadline if it is earlier.
func (r *RedisStore) applyBy(ctx context.Context, deadline time.Time, tenantID string, counters []counter) (applied, error) {
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c := callPool.Get().(*redisCall)
	c.ctx, c.deadline, c.tenantID, c.reply, c.err = ctx, deadline, tenantID, "", nil
	// The request's part of the script call, built here rather than by the flusher (callers run in
	// parallel): one slice, the window's numbers boxed once per window (see windowArgCache).
	parts := make([]any, 0, 1+len(counters)+1+5*len(counters))
	for _, k := range counters {
		parts = append(parts, r.prefix+k.Key)
	}
	parts = append(parts, r.indexKey(tenantID), len(counters))
	for _, k := range counters {
		wa := r.args.get(k.Window)
		parts = append(parts, wa[0], wa[1], wa[2], k.Hits, wa[3])
	}
	c.keys, c.argv = parts[:len(counters)+1], parts[len(counters)+1:]

	r.mu.Lock()
	r.pending = append(r.pending, c)
	busy := r.flushers > 0
	flusher := r.flushers < maxFlushers
	if flusher {
		r.flushers++
	}
	r.mu.Unlock()
	if flusher {
		if busy {
			// Under load (a batch is already on the wire), let the goroutines that are ready to run,
			// other requests on their way here, join this batch first: a batch of one costs the most
			// system calls per decision. Not when idle: a yield then only wakes another thread.
			runtime.Gosched()
		}
		// This caller sends the batch holding its own call (no goroutine to start and grow a stack
		// for), then hands what waits to a background flusher.
		r.flush(c)
	}
	select {
	case <-c.done:
	default:
		c.timer.Reset(time.Until(deadline))
		select {
		case <-c.done:
			c.timer.Stop()
		case <-c.timer.C:
			return applied{}, fmt.Errorf("redis rate-limit script: %w", context.DeadlineExceeded)
		case <-ctx.Done():
			c.timer.Stop()
			return applied{}, fmt.Errorf("redis rate-limit script: %w", ctx.Err())
		}
	}
	reply, err := c.reply, c.err
	c.ctx, c.keys, c.argv, c.reply = nil, nil, nil, ""
	callPool.Put(c)
	if err != nil {
		return applied{}, fmt.Errorf("redis rate-limit script: %w", err)
	}
	out, err := parseReply(reply, len(counters))
	if err != nil {
		return applied{}, fmt.Errorf("redis rate-limit script: %w", err)
	}
	return out, nil
}

// parseReply reads the script's reply: "now admitted used_1 oldest_1 ...", decimal integers
// separated by single spaces.
func parseReply(reply string, counters int) (applied, error) {
	want := 2 + 2*counters
	var vals [2 + 2*8]int64
	nums := vals[:0]
	if want > len(vals) {
		nums = make([]int64, 0, want)
	}
	for len(reply) > 0 {
		field, rest, _ := strings.Cut(reply, " ")
		v, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return applied{}, fmt.Errorf("reply %q: %w", reply, err)
		}
		nums = append(nums, v)
		reply = rest
	}
	if len(nums) != want {
		return applied{}, fmt.Errorf("%d values in reply, want %d", len(nums), want)
	}
	out := applied{NowMS: nums[0], Admitted: nums[1] == 1, Counts: make([]count, counters)}
	for i := range out.Counts {
		out.Counts[i] = count{Used: nums[2+2*i], Oldest: nums[3+2*i]}
	}
	return out, nil
}

// windowArgCache holds each window's script arguments (g, W, limit, TTL) boxed once, so that a call
// does not allocate them: a copy-on-write map, read without locking, of at most maxWindowArgs
// windows (the configured ones; any beyond are boxed per call).
type windowArgCache struct {
	mu sync.Mutex
	m  atomic.Pointer[map[window]*[4]any]
}

const maxWindowArgs = 256

func (c *windowArgCache) get(w window) *[4]any {
	if m := c.m.Load(); m != nil {
		if a := (*m)[w]; a != nil {
			return a
		}
	}
	a := &[4]any{w.SubMS, w.PeriodMS, w.Limit, w.TTLMS()}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxWindowArgs {
		return a
	}
	var m map[window]*[4]any
	if old != nil {
		m = make(map[window]*[4]any, len(*old)+1)
		maps.Copy(m, *old)
	} else {
		m = make(map[window]*[4]any, 1)
	}
	m[w] = a
	c.m.Store(&m)
	return a
}

// flush sends the waiting calls, a batch at a time. Called by a caller (own != nil), it returns once
// the caller's call is answered or its deadline has passed, leaving what still waits to a background
// flusher; in the background (own == nil), it returns when none wait. At most maxFlushers run, and
// each batch is bounded by its callers' deadlines.
func (r *RedisStore) flush(own *redisCall) {
	for {
		r.mu.Lock()
		n := min(len(r.pending), maxBatch)
		if n == 0 {
			r.flushers--
			r.mu.Unlock()
			return
		}
		if own != nil && (len(own.done) > 0 || !time.Now().Before(own.deadline) || own.ctx.Err() != nil) {
			r.mu.Unlock()
			go r.flush(nil)
			return
		}
		batch := make([]*redisCall, n)
		copy(batch, r.pending)
		r.pending = append(r.pending[:0], r.pending[n:]...)
		r.mu.Unlock()
		// On a caller's goroutine, the batch must not outlast the caller's own deadline.
		var limit time.Time
		if own != nil {
			limit = own.deadline
		}
		r.send(batch, limit)
	}
}

// send runs one batch, until the latest deadline of its calls or limit (if not zero), whichever is
// first; a call whose caller has given up is not sent (its hits would count for an answer nobody
// reads).
func (r *RedisStore) send(batch []*redisCall, limit time.Time) {
	live := batch[:0]
	var deadline time.Time
	now := time.Now()
	for _, c := range batch {
		if !now.Before(c.deadline) {
			c.err = context.DeadlineExceeded
			c.done <- struct{}{}
			continue
		}
		if err := c.ctx.Err(); err != nil {
			c.err = err
			c.done <- struct{}{}
			continue
		}
		live = append(live, c)
		if c.deadline.After(deadline) {
			deadline = c.deadline
		}
	}
	if len(live) == 0 {
		return
	}
	if !limit.IsZero() && limit.Before(deadline) {
		deadline = limit
	}
	// The batch lives as long as its most patient caller (or the caller sending it); each caller
	// stops waiting at its own deadline.
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	groups := r.group(live)
	cmds := make([]*redis.StringCmd, len(groups))
	for i, g := range groups {
		cmds[i] = scriptCall(ctx, "evalsha", r.sha, g)
	}
	if len(cmds) == 1 {
		_ = r.client.Process(ctx, cmds[0])
	} else {
		pipe := r.client.Pipeline()
		for _, cmd := range cmds {
			_ = pipe.Process(ctx, cmd)
		}
		_, _ = pipe.Exec(ctx)
	}
	for i, g := range groups {
		cmd := cmds[i]
		if err := cmd.Err(); err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")) {
			// The script cache was flushed (or this is a new node): EVAL loads it again.
			cmd = scriptCall(ctx, "eval", applyScript, g)
			_ = r.client.Process(ctx, cmd)
		}
		answer(g, cmd)
	}
}

// group splits a batch into script calls: one on a single server; on a cluster one per tenant, since
// the keys of one script call must share a slot (a tenant's do: they share its hash tag).
func (r *RedisStore) group(live []*redisCall) [][]*redisCall {
	if !r.cluster {
		return [][]*redisCall{live}
	}
	var groups [][]*redisCall
	at := make(map[string]int, len(live))
	for _, c := range live {
		i, ok := at[c.tenantID]
		if !ok {
			i = len(groups)
			at[c.tenantID] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	return groups
}

// scriptCall is the command deciding calls: `<verb> <script> numkeys KEYS... ARGV...` (apply.lua).
func scriptCall(ctx context.Context, verb string, script any, calls []*redisCall) *redis.StringCmd {
	keys, argv := 0, 1
	for _, c := range calls {
		keys += len(c.keys)
		argv += len(c.argv)
	}
	args := make([]any, 0, 3+keys+argv)
	args = append(args, verb, script, keys)
	for _, c := range calls {
		args = append(args, c.keys...)
	}
	args = append(args, len(calls))
	for _, c := range calls {
		args = append(args, c.argv...)
	}
	cmd := redis.NewStringCmd(ctx, args...)
	cmd.SetFirstKeyPos(3) // a cluster routes the call by its first key
	return cmd
}

// answer hands each call its part of the script's reply (one answer per call, separated by ','),
// or the call's error to all of them, and wakes them.
func answer(calls []*redisCall, cmd *redis.StringCmd) {
	reply, err := cmd.Result()
	if err == nil && strings.Count(reply, ",") != len(calls)-1 {
		err = fmt.Errorf("reply %q: %d answers, want %d", reply, strings.Count(reply, ",")+1, len(calls))
	}
	for _, c := range calls {
		if err != nil {
			c.err = err
		} else {
			c.reply, reply, _ = strings.Cut(reply, ",")
		}
		c.done <- struct{}{}
	}
}

// indexKey is the set naming every counter key of the tenant (in the tenant's slot; "index" is never
// a window length, so it cannot clash with a counter).
func (r *RedisStore) indexKey(tenantID string) string {
	return r.prefix + "{" + tenantID + "}:index" // tenantKeyPrefix(tenantID) + "index", in one allocation
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
