package ratelimit

import (
	"sync/atomic"
	"time"
)

// breaker skips the store for a while after it fails, so that while Redis is down or slow every
// request is decided at once by its plan's failure mode instead of each waiting out the deadline.
// After failures consecutive failures it opens for cooldown; then one request at a time probes the
// store (half-open) until one succeeds. The limiter's Run loop also probes with PING while it is
// open, so that recovery usually needs no request to pay for it.
type breaker struct {
	failures  int64
	cooldown  time.Duration
	now       func() time.Time
	consec    atomic.Int64
	openUntil atomic.Int64 // Unix ns; 0 when closed
	probing   atomic.Bool
}

func newBreaker(failures int, cooldown time.Duration) *breaker {
	return &breaker{failures: int64(max(1, failures)), cooldown: cooldown, now: time.Now}
}

// allow reports whether a call may go to the store now.
func (b *breaker) allow() bool {
	until := b.openUntil.Load()
	if until == 0 {
		return true
	}
	if b.now().UnixNano() < until {
		return false
	}
	return b.probing.CompareAndSwap(false, true)
}

// isOpen reports whether calls are being skipped.
func (b *breaker) isOpen() bool { return b.openUntil.Load() != 0 }

// success closes the breaker. It writes only what changed: it runs on every decision.
func (b *breaker) success() {
	if b.consec.Load() != 0 {
		b.consec.Store(0)
	}
	if b.openUntil.Load() != 0 {
		b.openUntil.Store(0)
		b.probing.Store(false)
	}
}

// abandoned ends a call whose caller gave up before the store answered: neither a success nor a
// failure, but a half-open breaker lets the next request probe.
func (b *breaker) abandoned() { b.probing.Store(false) }

// failure counts a failed call; it reports whether the breaker just opened.
func (b *breaker) failure() (opened bool) {
	wasOpen := b.openUntil.Load() != 0
	if b.consec.Add(1) >= b.failures || wasOpen {
		b.openUntil.Store(b.now().Add(b.cooldown).UnixNano())
		opened = !wasOpen
	}
	b.probing.Store(false)
	return opened
}
