package telemetry

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/testenv"
)

func newHook(t *testing.T) *RedisHook {
	t.Helper()
	h, err := NewRedisHook(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func counts(h *RedisHook) map[string]float64 {
	out := map[string]float64{}
	for k, c := range h.byKind {
		out[k] = testutil.ToFloat64(c)
	}
	return out
}

// TestRedisHook_CountsRedisErrorsByKind: against a real Redis, an error reply counts as server and
// each failed command of a pipeline counts once; answers that are not Redis failing (a missing key,
// NOSCRIPT, a caller giving up) count nothing.
func TestRedisHook_CountsRedisErrorsByKind(t *testing.T) {
	rd := testenv.NewRedis(t)
	h := newHook(t)
	opts, err := redis.ParseURL(rd.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	c.AddHook(h)
	ctx := context.Background()
	key := rd.Prefix + "hook"

	_ = c.Get(ctx, key+":missing").Err()                                      // redis.Nil
	_ = c.EvalSha(ctx, "0000000000000000000000000000000000000000", nil).Err() // NOSCRIPT
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_ = c.Get(canceled, key).Err()
	if got := counts(h); got[RedisErrServer]+got[RedisErrTimeout]+got[RedisErrConnection] != 0 {
		t.Fatalf("counted %v for answers that are not Redis failing", got)
	}

	if err := c.Set(ctx, key, "not a number", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Incr(ctx, key).Err(); err == nil {
		t.Fatal("INCR of a string succeeded")
	}
	pipe := c.Pipeline()
	pipe.Incr(ctx, key)
	pipe.Incr(ctx, key)
	pipe.Get(ctx, key)
	_, _ = pipe.Exec(ctx)
	if got := counts(h)[RedisErrServer]; got != 3 {
		t.Errorf("server errors = %v, want 3 (one command, two of a pipeline)", got)
	}
}

// TestRedisHook_CountsTimeoutsAndConnectionFailures: a server that never answers is a timeout, and
// nothing listening is a connection failure.
func TestRedisHook_CountsTimeoutsAndConnectionFailures(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			conn, err := silent.Accept()
			if err != nil {
				return
			}
			accepted <- conn // held open, never answered
		}
	}()
	defer func() {
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	}()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name string
		addr string
		want string
	}{
		{"server never answers", silent.Addr().String(), RedisErrTimeout},
		{"nothing listening", closedAddr, RedisErrConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHook(t)
			c := redis.NewClient(&redis.Options{Addr: tt.addr, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond,
				DialTimeout: 200 * time.Millisecond, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
			defer c.Close()
			c.AddHook(h)
			if err := c.Get(context.Background(), "k").Err(); err == nil {
				t.Fatal("GET succeeded")
			}
			if got := counts(h)[tt.want]; got < 1 {
				t.Errorf("%s = %v, want at least 1 (all: %v)", tt.want, got, counts(h))
			}
		})
	}
}
