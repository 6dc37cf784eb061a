package ratelimit

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestRedisFailure_FailureModeHoldsWithinTheDeadlineAndRecovers runs a limiter on a redis-server of
// its own, freezes it (SIGSTOP: calls hang), then kills it (SIGKILL: connections refused), then starts
// it again. Throughout, no call takes longer than the deadline plus a small margin; while Redis is
// away the fail-open plan allows and the fail-closed plan denies; readiness says Redis is down; once it
// is back, decisions come from Redis again and are correct.
func TestRedisFailure_FailureModeHoldsWithinTheDeadlineAndRecovers(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const deadline = 50 * time.Millisecond
	const margin = 60 * time.Millisecond
	srv := startRedisServer(t)
	client, err := OpenRedis(RedisOptions{URL: srv.url(), Timeout: deadline, PoolSize: 8, MinIdleConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	store, err := NewRedisStore(client, "tgtest:")
	if err != nil {
		t.Fatal(err)
	}
	l := newTestLimiter(t, store, func(c *Config) {
		c.Timeout, c.BreakerCooldown = deadline, 100*time.Millisecond
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	defer func() {
		cancel()
		wg.Wait()
		client.Close()
	}()

	var seq atomic.Int64
	// phase sends calls from 8 clients for d, alternating the fail-open tenant (acme, each call on a
	// new endpoint, so never over its limit) and the fail-closed one (globex), and returns what
	// happened.
	type tally struct {
		slowest              time.Duration
		openOK, openDenied   int
		closedOK, closedDeny int
		fromStore, fromCache int
		fromFail             int
	}
	phase := func(name string, d time.Duration) tally {
		var mu sync.Mutex
		var out tally
		var cw sync.WaitGroup
		end := time.Now().Add(d)
		for c := range 8 {
			cw.Go(func() {
				for i := 0; time.Now().Before(end); i++ {
					id, ep := acmeID, "e"+strconv.FormatInt(seq.Add(1), 10)
					if (c+i)%2 == 1 {
						id, ep = globexID, ""
					}
					req := request(entries(entryTenant, id, entryEndpoint, ep))
					if ep == "" {
						req = tenantReq(id)
					}
					q := l.parse(req)
					start := time.Now()
					dec, err := l.decide(context.Background(), q)
					took := time.Since(start)
					if err != nil {
						t.Errorf("%s: decide: %v", name, err)
						return
					}
					mu.Lock()
					out.slowest = max(out.slowest, took)
					switch {
					case id == acmeID && dec.Admitted:
						out.openOK++
					case id == acmeID:
						out.openDenied++
					case dec.Admitted:
						out.closedOK++
					default:
						out.closedDeny++
					}
					switch dec.Outcome {
					case fromFailureMode:
						out.fromFail++
					case fromCache: // globex known over its limit: refused without Redis
						out.fromCache++
					default:
						out.fromStore++
					}
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			})
		}
		cw.Wait()
		t.Logf("%s: %+v", name, out)
		if out.slowest > deadline+margin {
			t.Errorf("%s: slowest call took %v, more than the deadline %v plus %v", name, out.slowest, deadline, margin)
		}
		return out
	}
	down := func(name string, tl tally) {
		t.Helper()
		if tl.openDenied != 0 || tl.openOK == 0 {
			t.Errorf("%s: fail-open plan: %d allowed, %d denied; want all allowed", name, tl.openOK, tl.openDenied)
		}
		if tl.closedOK != 0 || tl.closedDeny == 0 {
			t.Errorf("%s: fail-closed plan: %d allowed, %d denied; want all denied", name, tl.closedOK, tl.closedDeny)
		}
		if tl.fromStore != 0 {
			t.Errorf("%s: %d decisions claim to come from the store", name, tl.fromStore)
		}
		if err := l.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "down") {
			t.Errorf("%s: readiness says %v, want Redis down", name, err)
		}
	}

	if tl := phase("healthy", 300*time.Millisecond); tl.fromFail != 0 || tl.openDenied != 0 {
		t.Fatalf("healthy Redis: %+v", tl)
	}
	srv.stop()
	down("frozen", phase("frozen", 600*time.Millisecond))
	srv.resume()
	srv.kill()
	down("killed", phase("killed", 600*time.Millisecond))

	srv.start()
	recovered := time.Now()
	for {
		tl := phase("recovering", 100*time.Millisecond)
		if tl.fromFail == 0 {
			break
		}
		if time.Since(recovered) > 5*time.Second {
			t.Fatal("decisions did not come from Redis within 5s of its return")
		}
	}
	t.Logf("back on Redis %v after it returned", time.Since(recovered).Round(time.Millisecond))
	if err := l.Ping(context.Background()); err != nil {
		t.Errorf("readiness after recovery: %v", err)
	}
	// Correct again: the restarted Redis is empty, so the strict plan admits 3 of 5.
	time.Sleep(450 * time.Millisecond) // let the recovering phase's globex calls leave the window
	if got := admitN(t, l, tenantReq(globexID), 5); got != 3 {
		t.Fatalf("after recovery admitted %d of 5, want 3", got)
	}
}
