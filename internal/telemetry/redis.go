package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Kinds of Redis errors, the values of the kind label.
const (
	RedisErrTimeout    = "timeout"    // a dial, read or write deadline passed
	RedisErrConnection = "connection" // dial refused, connection reset or closed
	RedisErrServer     = "server"     // an error reply: OOM, READONLY, CLUSTERDOWN, LOADING, a script error...
)

// RedisHook is a go-redis hook that counts failed Redis commands and dials by kind, as
// tenantgate_ratelimit_redis_errors_total{kind}. A caller giving up (context canceled), a missing
// key (redis.Nil), NOSCRIPT (answered by loading the script) and a handshake command an older
// server refuses are not errors of Redis. Add it with client.AddHook.
type RedisHook struct {
	byKind map[string]prometheus.Counter
}

// NewRedisHook registers the counter with r and returns the hook.
func NewRedisHook(r prometheus.Registerer) (*RedisHook, error) {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tenantgate_ratelimit_redis_errors_total",
		Help: "Failed Redis commands and dials of the rate limiter, by kind (timeout, connection, server).",
	}, []string{"kind"})
	if err := r.Register(errs); err != nil {
		return nil, fmt.Errorf("redis metrics: %w", err)
	}
	h := &RedisHook{byKind: map[string]prometheus.Counter{}}
	for _, k := range []string{RedisErrTimeout, RedisErrConnection, RedisErrServer} {
		h.byKind[k] = errs.WithLabelValues(k)
	}
	return h, nil
}

// DialHook counts failed dials.
func (h *RedisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if kind := RedisErrorKind(err, true); kind != "" {
			h.byKind[kind].Inc()
		}
		return conn, err
	}
}

// ProcessHook counts a failed command.
func (h *RedisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.count(cmd, err)
		return err
	}
}

// ProcessPipelineHook counts each failed command of a pipeline.
func (h *RedisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			h.count(c, c.Err())
		}
		return err
	}
}

func (h *RedisHook) count(cmd redis.Cmder, err error) {
	kind := RedisErrorKind(err, false)
	if kind == "" {
		return
	}
	// A connection's handshake tries commands older servers refuse (HELLO 3, CLIENT SETINFO): such a
	// refusal is negotiation, not a failure.
	if name := cmd.Name(); kind == RedisErrServer && (name == "hello" || name == "client") {
		return
	}
	h.byKind[kind].Inc()
}

// RedisErrorKind classifies a Redis client error; "" for no error or one that is not Redis's.
func RedisErrorKind(err error, dial bool) string {
	var nerr net.Error
	var rerr redis.Error
	switch {
	case err == nil, errors.Is(err, redis.Nil), errors.Is(err, context.Canceled):
		return ""
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		return RedisErrTimeout
	case dial, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, redis.ErrClosed):
		return RedisErrConnection
	case errors.As(err, &rerr):
		if strings.HasPrefix(err.Error(), "NOSCRIPT") {
			return ""
		}
		return RedisErrServer
	}
	var operr *net.OpError
	if errors.As(err, &operr) {
		return RedisErrConnection
	}
	return RedisErrServer
}
