package ratelimit

import (
	"time"

	"github.com/tenantgate/tenantgate/internal/config"
)

// SubWindows is how many sub-windows a window is split into. The granularity of a window of length W
// is g = ceil(W/SubWindows) milliseconds (W/60, rounded up to a whole millisecond).
const SubWindows = 60

// The algorithm: a sliding window counted in sub-windows.
//
// Time is in whole milliseconds of the store's clock (Redis's TIME for the Redis store, the process's
// monotonic clock for the memory store). A window (limit L, length W) is split into sub-windows of
// g = ceil(W/60) ms; sub-window b covers [b*g, (b+1)*g). Each counter key holds one count per
// sub-window (one Redis hash field each). A decision at time t:
//
//   - counts every sub-window b with b >= first(t) = floor((t-W)/g), and drops older ones;
//   - admits iff that sum plus the request's hits is <= L (for every window of every descriptor of the
//     request: check all, then increment all, in one atomic step);
//   - on admission adds hits to sub-window b = floor(t/g) and keeps the key at least until b leaves
//     the window, at (b+1)*g + W: the Redis script sets a TTL of W+g at the first admission into b
//     (at a time >= b*g), the memory store W+g past every admission.
//
// Never over-admits. Take any interval (s, s+W] and the admissions at times in it; let d be the last
// of them, at time t_d <= s+W. Decisions are atomic and made in time order (one clock, one
// serialised store), so every other admission in the interval was recorded before d was decided. Each
// was at a time t in (s, t_d], so t > t_d - W and its sub-window floor(t/g) >= floor((t_d-W)/g) =
// first(t_d): d's sum counted it. It was not dropped: earlier decisions drop only sub-windows below
// their own first(.), which is <= first(t_d); and if the key expired before t_d, its newest
// sub-window b had left the window: t_d >= (b+1)*g + W, while every admission it recorded was at a
// time X < (b+1)*g, so X < t_d - W and nothing recorded is in the interval. So d's sum is at
// least the hits of the other admissions in the interval, and d was admitted only if that sum plus its
// own hits is <= L. Hence at most L hits are admitted in any interval of length W.
//
// Under-admission is bounded by one sub-window: the sum counts whole sub-windows, so it may include
// admissions in [first(t)*g, t-W], an interval shorter than g. A request is refused only if the
// admissions in (t-W-g, t] plus its hits exceed L.
//
// Memory: at most ceil(W/g)+1 <= 61 sub-windows per key, and one key per tenant, endpoint and window,
// each expiring at most W+g after its last admission (in Redis also one set per tenant naming its
// keys, for the purge). No per-request entries.
//
// The Redis store keeps two more fields per key: the sum of its sub-windows and the oldest of them.
// A decision then reads those two and touches only the sub-windows leaving the window, instead of
// reading all of them. A window under steady traffic holds 61: read and summed whole, it cost Redis
// 41-45 us of CPU per decision against 13-16 us for a window of one or two, and with the two fields
// 18-21 us (BenchmarkStoreApply/redis-full-window). The sum a decision reads is the same: the total
// of the stored sub-windows once those before first(t) are dropped.
//
// One clock: the Redis script reads Redis's TIME and mirrors bucket and first (two lines) rather than
// taking the time from the caller, because replicas' clocks differ and a decision that reached Redis
// late with an early time could miss counts a later one had already pruned. With Redis's clock the
// order of execution is the order of time, which the proof needs. A script call decides a batch of
// requests one after another at the time it read once: their times are equal, so the order still
// holds, and each request is still checked and incremented as one step. Everything else (remaining, reset,
// units, headers) is computed here from what the store returns.

// window is one configured window in store terms: all in whole milliseconds.
type window struct {
	Limit    int64
	PeriodMS int64 // W
	SubMS    int64 // g
}

func newWindow(w config.Window) window {
	p := w.Period.D().Milliseconds()
	return window{Limit: w.Limit, PeriodMS: p, SubMS: max(1, (p+SubWindows-1)/SubWindows)}
}

// Period is the window's length.
func (w window) Period() time.Duration { return time.Duration(w.PeriodMS) * time.Millisecond }

// TTLMS is the TTL a counter key is given on admission (see above): W + g.
func (w window) TTLMS() int64 { return w.PeriodMS + w.SubMS }

// bucket is the sub-window holding time t (ms).
func (w window) bucket(t int64) int64 { return floorDiv(t, w.SubMS) }

// first is the oldest sub-window a decision at time t counts.
func (w window) first(t int64) int64 { return floorDiv(t-w.PeriodMS, w.SubMS) }

// leavesAt is the time at which sub-window b stops being counted: the smallest t with first(t) > b.
func (w window) leavesAt(b int64) int64 { return (b+1)*w.SubMS + w.PeriodMS }

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// count is what a store reports for one window at a decision: the hits counted (before this request)
// and the oldest counted sub-window that holds any (-1 when none).
type count struct {
	Used   int64
	Oldest int64
}

// admits reports whether hits more fit in the window given what is counted.
func (w window) admits(c count, hits int64) bool { return c.Used+hits <= w.Limit }

// state is a window's state after a decision, for the response.
type state struct {
	Window    window
	Used      int64 // after the decision: includes this request's hits if it was admitted
	Remaining int64
	// ResetIn is how long until quota comes back: until the oldest counted sub-window leaves the
	// window. Zero when nothing is counted.
	ResetIn time.Duration
	Over    bool // this window alone refuses the request
}

// stateAfter computes a window's state at time now (ms) from the store's count, the request's hits and
// whether the request as a whole was admitted.
func (w window) stateAfter(now int64, c count, hits int64, admitted bool) state {
	used, oldest := c.Used, c.Oldest
	if admitted && hits > 0 {
		used += hits
		if oldest < 0 {
			oldest = w.bucket(now)
		}
	}
	s := state{Window: w, Used: used, Remaining: max(0, w.Limit-used), Over: !w.admits(c, hits)}
	if oldest >= 0 {
		s.ResetIn = time.Duration(max(0, w.leavesAt(oldest)-now)) * time.Millisecond
	}
	return s
}
