package ratelimit

import (
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Response header names.
const (
	headerRateLimit       = "RateLimit"        // IETF draft-ietf-httpapi-ratelimit-headers (structured fields)
	headerRateLimitPolicy = "RateLimit-Policy" // same draft
	headerXLimit          = "X-RateLimit-Limit"
	headerXRemaining      = "X-RateLimit-Remaining"
	headerXReset          = "X-RateLimit-Reset" // seconds until reset
)

// allowAll answers a request that is not ours: every descriptor OK, nothing counted.
func allowAll(n int) *rlsv3.RateLimitResponse {
	r := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)}
	for i := range r.Statuses {
		r.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	}
	return r
}

// respond builds Envoy's answer: one status per descriptor, in order, and the rate-limit headers.
// A descriptor's status reports its most constraining window (one that refused, else the one with the
// least remaining); the headers report the most constraining window of the whole request.
func respond(q *query, d decision) *rlsv3.RateLimitResponse {
	r := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(q.Descs))}
	if !d.Admitted {
		r.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	best := -1
	for i, desc := range q.Descs {
		st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
		r.Statuses[i] = st
		if !desc.Ours {
			continue
		}
		switch d.Outcome {
		case fromStore, fromCache:
			c := mostConstraining(d.States, desc.Counters)
			s := d.States[c]
			if s.Over {
				st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			}
			st.CurrentLimit = currentLimit(s.Window)
			st.LimitRemaining = uint32(min(s.Remaining, int64(^uint32(0))))
			st.DurationUntilReset = durationpb.New(s.ResetIn)
			if best < 0 || constrains(s, d.States[best]) {
				best = c
			}
		case fromFailureMode, refused:
			if !d.Admitted {
				st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			}
			ws := q.Plan.windowsFor(desc.Endpoint)
			st.CurrentLimit = currentLimit(ws[0])
		}
	}
	if best >= 0 {
		r.ResponseHeadersToAdd = headers(q, d.States, best)
	}
	return r
}

// mostConstraining picks, among the given counters, a window that refused, else the one with the
// least remaining, else the one resetting last.
func mostConstraining(states []state, idx []int) int {
	c := idx[0]
	for _, i := range idx[1:] {
		if constrains(states[i], states[c]) {
			c = i
		}
	}
	return c
}

func constrains(a, b state) bool {
	if a.Over != b.Over {
		return a.Over
	}
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.ResetIn > b.ResetIn
}

// headers renders RateLimit-Policy (every window of the request), RateLimit and the X-RateLimit-*
// headers (the most constraining window). Reset values are whole seconds, rounded up.
func headers(q *query, states []state, worstIdx int) []*corev3.HeaderValue {
	worst := states[worstIdx]
	policy := make([]byte, 0, 64)
	for i, s := range states {
		if i > 0 {
			policy = append(policy, ", "...)
		}
		policy = appendPolicyItem(policy, q.Counters[i], s.Window)
	}
	reset := strconv.FormatInt(ceilSeconds(worst.ResetIn), 10)
	remaining := strconv.FormatInt(worst.Remaining, 10)
	rl := make([]byte, 0, 48)
	rl = appendPolicyName(rl, q.Counters[worstIdx], worst.Window)
	rl = append(rl, ";r="...)
	rl = append(rl, remaining...)
	rl = append(rl, ";t="...)
	rl = append(rl, reset...)
	return []*corev3.HeaderValue{
		{Key: headerRateLimitPolicy, Value: string(policy)},
		{Key: headerRateLimit, Value: string(rl)},
		{Key: headerXLimit, Value: strconv.FormatInt(worst.Window.Limit, 10)},
		{Key: headerXRemaining, Value: remaining},
		{Key: headerXReset, Value: reset},
	}
}

// appendPolicyItem appends `"<name>";q=<limit>;w=<seconds>` (w rounded up to a whole second, as
// the draft has it in seconds).
func appendPolicyItem(b []byte, c counter, w window) []byte {
	b = appendPolicyName(b, c, w)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, w.Limit, 10)
	b = append(b, ";w="...)
	return strconv.AppendInt(b, ceilSeconds(w.Period()), 10)
}

// appendPolicyName appends the policy's name as a structured-field string: the window length, after
// the endpoint when the counter is an endpoint's (`"search 1m"`, `"1h"`).
func appendPolicyName(b []byte, c counter, w window) []byte {
	b = append(b, '"')
	if ep := endpointOfKey(c.Key); ep != "" {
		for i := 0; i < len(ep); i++ {
			ch := ep[i]
			if ch < 0x20 || ch > 0x7e {
				continue // not allowed in a structured-field string
			}
			if ch == '"' || ch == '\\' {
				b = append(b, '\\')
			}
			b = append(b, ch)
		}
		b = append(b, ' ')
	}
	b = append(b, shortDuration(w.Period())...)
	return append(b, '"')
}

// endpointOfKey returns the endpoint part of a keyName.
func endpointOfKey(key string) string {
	colons := 0
	for i := 0; i < len(key); i++ {
		if key[i] == '}' && colons == 0 {
			colons = -1 // past the tag; the next two colons delimit the period
		}
		if key[i] == ':' && colons < 0 {
			colons--
			if colons == -3 {
				return key[i+1:]
			}
		}
	}
	return ""
}

func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

// shortDuration writes a window length compactly: 500ms, 2s, 1m, 90s, 1h, 1d.
func shortDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
}

// units are Envoy's rate-limit units, longest first.
var units = []struct {
	unit rlsv3.RateLimitResponse_RateLimit_Unit
	d    time.Duration
}{
	{rlsv3.RateLimitResponse_RateLimit_DAY, 24 * time.Hour},
	{rlsv3.RateLimitResponse_RateLimit_HOUR, time.Hour},
	{rlsv3.RateLimitResponse_RateLimit_MINUTE, time.Minute},
	{rlsv3.RateLimitResponse_RateLimit_SECOND, time.Second},
}

// currentLimit expresses a window in Envoy's terms. A window whose length is a whole number of
// seconds is exact: the longest unit dividing it, with unit_multiplier (20 per 2s is 20 per SECOND
// times 2). A window of a fraction of a second, or of a length such as 1500ms, is given in the
// closest whole number of seconds (at least 1) with the limit scaled to it and rounded down (at least
// 1): 5 per 500ms reads as 10 per SECOND, which is also the most a sliding 500ms window admits in any
// second. The name always holds the exact window (such as "5/500ms").
func currentLimit(w window) *rlsv3.RateLimitResponse_RateLimit {
	p := w.Period()
	rl := &rlsv3.RateLimitResponse_RateLimit{Name: strconv.FormatInt(w.Limit, 10) + "/" + shortDuration(p)}
	for _, u := range units {
		if p%u.d == 0 {
			rl.Unit = u.unit
			rl.RequestsPerUnit = uint32(min(w.Limit, int64(^uint32(0))))
			if m := p / u.d; m > 1 {
				rl.UnitMultiplier = wrapperspb.UInt32(uint32(m))
			}
			return rl
		}
	}
	secs := max(1, (p+time.Second/2)/time.Second)
	rl.Unit = rlsv3.RateLimitResponse_RateLimit_SECOND
	rl.RequestsPerUnit = uint32(min(max(1, w.Limit*int64(secs*time.Second)/int64(p)), int64(^uint32(0))))
	if secs > 1 {
		rl.UnitMultiplier = wrapperspb.UInt32(uint32(secs))
	}
	return rl
}
