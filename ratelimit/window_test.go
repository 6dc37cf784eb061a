package ratelimit

import (
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

func TestNewWindow_SubWindowIsASixtiethRoundedUpToAMillisecond(t *testing.T) {
	cases := []struct {
		period     time.Duration
		sub, ttlMS int64
	}{
		{time.Hour, 60_000, 3_660_000},
		{2 * time.Second, 34, 2034},
		{500 * time.Millisecond, 9, 509},
		{100 * time.Millisecond, 2, 102},
		{time.Minute, 1000, 61_000},
	}
	for _, tc := range cases {
		w := newWindow(win(10, tc.period))
		if w.SubMS != tc.sub || w.TTLMS() != tc.ttlMS {
			t.Errorf("%v: sub-window %dms TTL %dms, want %d %d", tc.period, w.SubMS, w.TTLMS(), tc.sub, tc.ttlMS)
		}
		// At most SubWindows+1 sub-windows are ever counted.
		if n := w.bucket(1_000_000_007) - w.first(1_000_000_007) + 1; n > SubWindows+1 {
			t.Errorf("%v: %d sub-windows counted", tc.period, n)
		}
	}
}

func TestWindow_CountsEverySubWindowOverlappingTheLastW(t *testing.T) {
	w := newWindow(win(10, time.Second)) // g = 17ms
	for _, now := range []int64{0, 1, 16, 17, 999, 1000, 1017, 123_456_789} {
		// Any time t in (now-W, now] is in a counted sub-window.
		for _, t0 := range []int64{now - w.PeriodMS + 1, now} {
			if b := w.bucket(t0); b < w.first(now) || b > w.bucket(now) {
				t.Errorf("now %d: time %d in sub-window %d, outside [%d, %d]", now, t0, b, w.first(now), w.bucket(now))
			}
		}
		// A sub-window leaves exactly when its last instant is W old.
		b := w.first(now)
		if w.first(w.leavesAt(b)) != b+1 || w.first(w.leavesAt(b)-1) != b {
			t.Errorf("sub-window %d does not leave at %d", b, w.leavesAt(b))
		}
	}
	if floorDiv(-1, 17) != -1 || floorDiv(-17, 17) != -1 || floorDiv(16, 17) != 0 {
		t.Error("floorDiv does not round down")
	}
}

func TestWindow_StateAfter(t *testing.T) {
	w := newWindow(win(5, time.Second)) // g = 17ms
	now := int64(10_000)
	cases := []struct {
		name         string
		c            count
		hits         int64
		admitted     bool
		used, remain int64
		reset        time.Duration
		over         bool
	}{
		{"empty, admitted", count{0, -1}, 1, true, 1, 4, time.Duration(w.leavesAt(w.bucket(now))-now) * time.Millisecond, false},
		{"check only on empty", count{0, -1}, 0, true, 0, 5, 0, false},
		{"full, refused", count{5, w.first(now)}, 1, false, 5, 0, time.Duration(w.leavesAt(w.first(now))-now) * time.Millisecond, true},
		{"room, but the request was refused elsewhere", count{2, w.first(now) + 3}, 1, false, 2, 3, time.Duration(w.leavesAt(w.first(now)+3)-now) * time.Millisecond, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := w.stateAfter(now, tc.c, tc.hits, tc.admitted)
			if s.Used != tc.used || s.Remaining != tc.remain || s.ResetIn != tc.reset || s.Over != tc.over {
				t.Errorf("got used %d remaining %d reset %v over %v", s.Used, s.Remaining, s.ResetIn, s.Over)
			}
		})
	}
}

func TestCurrentLimit_ChoosesTheClosestEnvoyUnit(t *testing.T) {
	cases := []struct {
		limit  int64
		period time.Duration
		rpu    uint32
		unit   rlsv3.RateLimitResponse_RateLimit_Unit
		mult   uint32 // 0: none
		name   string
	}{
		{100, time.Hour, 100, rlsv3.RateLimitResponse_RateLimit_HOUR, 0, "100/1h"},
		{20, 2 * time.Second, 20, rlsv3.RateLimitResponse_RateLimit_SECOND, 2, "20/2s"},
		{5, 500 * time.Millisecond, 10, rlsv3.RateLimitResponse_RateLimit_SECOND, 0, "5/500ms"},
		{30, 1500 * time.Millisecond, 40, rlsv3.RateLimitResponse_RateLimit_SECOND, 2, "30/1500ms"},
		{7, 48 * time.Hour, 7, rlsv3.RateLimitResponse_RateLimit_DAY, 2, "7/2d"},
		{9, 90 * time.Second, 9, rlsv3.RateLimitResponse_RateLimit_SECOND, 90, "9/90s"},
		{1, 100 * time.Millisecond, 10, rlsv3.RateLimitResponse_RateLimit_SECOND, 0, "1/100ms"},
	}
	for _, tc := range cases {
		rl := currentLimit(newWindow(win(tc.limit, tc.period)))
		if rl.GetRequestsPerUnit() != tc.rpu || rl.GetUnit() != tc.unit || rl.GetUnitMultiplier().GetValue() != tc.mult || rl.GetName() != tc.name {
			t.Errorf("%d/%v: got %v", tc.limit, tc.period, rl)
		}
	}
}

func TestPolicyName_EscapesTheEndpoint(t *testing.T) {
	w := newWindow(win(3, time.Minute))
	got := string(appendPolicyName(nil, counter{Key: keyName(acmeID, `a"b\c`+"\x01", w)}, w))
	if got != `"a\"b\\c 1m"` {
		t.Fatalf("got %s", got)
	}
	if got := string(appendPolicyName(nil, counter{Key: keyName(acmeID, "", w)}, w)); got != `"1m"` {
		t.Fatalf("tenant-wide: got %s", got)
	}
}
