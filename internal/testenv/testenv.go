package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Defaults used when the environment names no server.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// DatabaseURL is the admin URL of the test Postgres server.
func DatabaseURL() string {
	if u := os.Getenv("TENANTGATE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

// RedisURL is the URL of the test Redis server.
func RedisURL() string {
	if u := os.Getenv("TENANTGATE_TEST_REDIS_URL"); u != "" {
		return u
	}
	return DefaultRedisURL
}

// Unavailable fails the test under CI=true and skips it otherwise, saying loudly what is missing.
func Unavailable(t testing.TB, what string, err error) {
	t.Helper()
	msg := fmt.Sprintf("TESTENV: %s is not reachable (%v); this test needs it", what, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip("SKIPPED LOUDLY: " + msg)
}

// Suffix returns a short random suffix for names a test creates.
func Suffix() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// Database creates a fresh, empty database for the test, drops it at cleanup, and returns its URL
// (connecting as the admin user of DatabaseURL).
func Database(t testing.TB) string {
	t.Helper()
	admin := DatabaseURL()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		Unavailable(t, "PostgreSQL at "+redact(admin), err)
	}
	defer conn.Close(ctx)
	name := "tg_test_" + Suffix()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() { DropDatabase(t, name) })
	return WithDatabase(admin, name)
}

// DropDatabase drops a database, ending its sessions first.
func DropDatabase(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		t.Errorf("testenv: drop database %s: %v", name, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("testenv: drop database %s: %v", name, err)
	}
}

// WithDatabase returns the URL u pointing at database name.
func WithDatabase(u, name string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		panic(fmt.Sprintf("testenv: bad database url: %v", err))
	}
	parsed.Path = "/" + name
	return parsed.String()
}

// Redis is a test's view of the Redis server: a client and a key prefix the test owns.
type Redis struct {
	Client *redis.Client
	URL    string
	Prefix string
}

// NewRedis connects to the test Redis server and gives the test a fresh key prefix; at cleanup every
// key under the prefix is deleted and the client closed.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	u := RedisURL()
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("testenv: bad redis url: %v", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		Unavailable(t, "Redis at "+redact(u), err)
	}
	r := &Redis{Client: client, URL: u, Prefix: "tgtest:" + Suffix() + ":"}
	t.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := DeletePrefix(ctx, client, r.Prefix); err != nil {
			t.Errorf("testenv: clean redis prefix %s: %v", r.Prefix, err)
		}
	})
	return r
}

// DeletePrefix deletes every key that starts with prefix (keys with a {hash tag} after the prefix
// included).
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) error {
	iter := c.Scan(ctx, 0, escapeGlob(prefix)+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := c.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return c.Del(ctx, batch...).Err()
	}
	return nil
}

func escapeGlob(s string) string {
	r := strings.NewReplacer(`*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

func redact(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(unparseable url)"
	}
	return parsed.Redacted()
}
