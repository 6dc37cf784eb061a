package ratelimit

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// Store keeps the counters of the sliding windows. It stores and compares counts; the arithmetic
// around it (sub-windows, remaining, reset) is window.go's.
type Store interface {
	// Apply decides one request atomically at the store's current time: it counts every counter's
	// window and, only if every counter admits its hits, adds the hits to all of them. Every counter
	// belongs to the one tenant.
	Apply(ctx context.Context, tenantID string, counters []counter) (applied, error)
	// PurgeTenant removes every counter of the tenant.
	PurgeTenant(ctx context.Context, tenantID string) error
	// Ping reports whether the store is reachable.
	Ping(ctx context.Context) error
}

// deadlineStore is a Store that takes a call's deadline as a value: the limiter then bounds a
// call without deriving a context for it, which costs a timer, a channel and a registration with
// the parent (gRPC's) context on every decision.
type deadlineStore interface {
	// applyBy is Apply bounded by deadline (or by ctx's deadline, if earlier) and ended early if ctx
	// ends.
	applyBy(ctx context.Context, deadline time.Time, tenantID string, counters []counter) (applied, error)
}

// counter is one window of one descriptor, as sent to a store.
type counter struct {
	Key    string // keyName(tenant, endpoint, window)
	Window window
	Hits   int64
}

// applied is a store's answer to Apply.
type applied struct {
	NowMS    int64   // the store's clock at the decision, in Unix milliseconds
	Admitted bool    // every counter admitted its hits and they were added
	Counts   []count // per counter, before this request's hits
}

// keyName is a counter's key: the tenant in a hash tag (so one request's keys share a Redis Cluster
// slot), then the window's length, then the endpoint (last, so any route name is safe in it).
func keyName(tenantID, endpoint string, w window) string {
	var b strings.Builder
	b.Grow(len(tenantID) + len(endpoint) + 16)
	b.WriteString("{")
	b.WriteString(tenantID)
	b.WriteString("}:")
	b.WriteString(strconv.FormatInt(w.PeriodMS, 10))
	b.WriteString(":")
	b.WriteString(endpoint)
	return b.String()
}

// tenantKeyPrefix is the start of every key of the tenant.
func tenantKeyPrefix(tenantID string) string { return "{" + tenantID + "}:" }
