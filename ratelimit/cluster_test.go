package ratelimit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/config"
)

// TestRedisCluster_OneRequestsKeysShareASlot runs the limiter on a three-master Redis Cluster started
// by the test: a request with two descriptors (three windows, three keys) is decided by one script
// (no CROSSSLOT), limits hold, and purge finds the tenant's keys.
func TestRedisCluster_OneRequestsKeysShareASlot(t *testing.T) {
	store := openClusterStore(t)
	client := store.client
	if _, ok := client.(*redis.ClusterClient); !ok {
		t.Fatalf("redis+cluster:// gave a %T, want a cluster client", client)
	}
	// Windows of minutes, not the shared plans' 400ms: the first calls on a cluster that has just
	// formed can take longer than 400ms, and a window that slides past during the test admits more.
	l := newTestLimiter(t, store, func(c *Config) {
		c.OverLimitCacheSize = 0
		c.Plans = map[string]config.Plan{
			"pro": {
				Windows:     []config.Window{win(5, time.Minute), win(8, 10*time.Minute)},
				Endpoints:   map[string][]config.Window{"search": {win(2, time.Minute)}},
				FailureMode: "open",
			},
			"strict": {Windows: []config.Window{win(3, time.Minute)}, FailureMode: "closed"},
			"tiny":   {Windows: []config.Window{win(1, time.Hour)}, FailureMode: "open"},
		}
	})
	both := request(entries(entryTenant, acmeID), entries(entryTenant, acmeID, entryEndpoint, "search"))
	if got := admitN(t, l, both, 4); got != 2 {
		t.Fatalf("admitted %d, want 2 (search allows 2 per minute)", got)
	}
	if got := admitN(t, l, tenantReq(globexID), 4); got != 3 {
		t.Fatalf("second tenant admitted %d, want 3", got)
	}
	ctx := context.Background()
	count := func(pattern string) int {
		var n atomic.Int64 // ForEachMaster runs the masters concurrently
		err := client.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			keys, err := c.Keys(ctx, pattern).Result()
			n.Add(int64(len(keys)))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return int(n.Load())
	}
	if n := count("tgtest:{" + acmeID + "}*"); n != 4 {
		t.Fatalf("%d keys of the tenant, want 4 (3 counters and the index)", n)
	}
	if err := l.PurgeTenant(ctx, acmeID); err != nil {
		t.Fatal(err)
	}
	if n := count("tgtest:{" + acmeID + "}*"); n != 0 {
		t.Fatalf("%d keys of the tenant after purge, want 0", n)
	}
	if n := count("tgtest:{" + globexID + "}*"); n != 2 {
		t.Fatalf("purge touched another tenant: %d keys left, want 2", n)
	}
	if err := l.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// openClusterStore starts a three-master Redis Cluster and opens a store on it as the binary does
// (OpenRedis with a redis+cluster:// URL naming two of the nodes).
func openClusterStore(t *testing.T) *RedisStore {
	t.Helper()
	nodes := startRedisCluster(t)
	client, err := OpenRedis(RedisOptions{URL: "redis+cluster://" + nodes[0].addr() + "?addr=" + nodes[1].addr(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	store, err := NewRedisStore(client, "tgtest:")
	if err != nil {
		t.Fatal(err)
	}
	return store
}
