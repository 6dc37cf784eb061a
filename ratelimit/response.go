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

// responseArena holds a response to a request of up to two descriptors in one allocation: the
// service answers tens of thousands a second, and each separate allocation costs CPU and GC.
type responseArena struct {
	resp       rlsv3.RateLimitResponse
	statuses   [2]rlsv3.RateLimitResponse_DescriptorStatus
	statusPtrs [2]*rlsv3.RateLimitResponse_DescriptorStatus
	durations  [2]durationpb.Duration
	headers    [5]corev3.HeaderValue
	headerPtrs [5]*corev3.HeaderValue
}

// respond builds Envoy's answer: one status per descriptor, in order, and the rate-limit headers.
// A descriptor's status reports its most constraining window (one that refused, else the one with the
// least remaining); the headers report the most constraining window of the whole request.
func (t windowTexts) respond(q *query, d decision) *rlsv3.RateLimitResponse {
	a := new(responseArena)
	r := &a.resp
	r.OverallCode = rlsv3.RateLimitResponse_OK
	if n := len(q.Descs); n <= len(a.statuses) {
		r.Statuses = a.statusPtrs[:n]
		for i := range r.Statuses {
			r.Statuses[i] = &a.statuses[i]
		}
	} else {
		r.Statuses = make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
		for i := range r.Statuses {
			r.Statuses[i] = &rlsv3.RateLimitResponse_DescriptorStatus{}
		}
	}
	if !d.Admitted {
		r.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	best := -1
	for i, desc := range q.Descs {
		st := r.Statuses[i]
		st.Code = rlsv3.RateLimitResponse_OK
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
			st.CurrentLimit = t.of(s.Window).limit
			st.LimitRemaining = uint32(min(s.Remaining, int64(^uint32(0))))
			if i < len(a.durations) {
				st.DurationUntilReset = &a.durations[i]
				st.DurationUntilReset.Seconds, st.DurationUntilReset.Nanos = durationParts(s.ResetIn)
			} else {
				st.DurationUntilReset = durationpb.New(s.ResetIn)
			}
			if best < 0 || constrains(s, d.States[best]) {
				best = c
			}
		case fromFailureMode, refused:
			if !d.Admitted {
				st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			}
			ws := q.Plan.windowsFor(desc.Endpoint)
			st.CurrentLimit = t.of(ws[0]).limit
		}
	}
	if best >= 0 {
		r.ResponseHeadersToAdd = a.headerPtrs[:]
		for i := range a.headers {
			r.ResponseHeadersToAdd[i] = &a.headers[i]
		}
		t.headers(r.ResponseHeadersToAdd, q, d.States, best)
	}
	return r
}

// durationParts splits d as durationpb.New does.
func durationParts(d time.Duration) (seconds int64, nanos int32) {
	return int64(d / time.Second), int32(d % time.Second)
}

// windowText is what a response says of a window, rendered once per configured window.
type windowText struct {
	// limit is shared by every response that reports this window: it is never modified (marshalling
	// only reads it).
	limit  *rlsv3.RateLimitResponse_RateLimit
	name   string // the policy name of the window without an endpoint: "1h" (quoted)
	policy string // the RateLimit-Policy item of the window without an endpoint
	max    string // X-RateLimit-Limit
}

func newWindowText(w window) *windowText {
	return &windowText{
		limit:  currentLimit(w),
		name:   string(appendEndpointPolicyName(nil, "", w)),
		policy: string(appendPolicyItem(nil, "", w)),
		max:    strconv.FormatInt(w.Limit, 10),
	}
}

// windowTexts are the texts of every configured window. A window not in it (none, when the
// limiter's plans built it) is rendered on the fly.
type windowTexts map[window]*windowText

func newWindowTexts(ps *planSet) windowTexts {
	t := windowTexts{}
	add := func(ws []window) {
		for _, w := range ws {
			if t[w] == nil {
				t[w] = newWindowText(w)
			}
		}
	}
	add(ps.restrictive.Windows)
	for _, p := range ps.byName {
		add(p.Windows)
		for _, ws := range p.Endpoints {
			add(ws)
		}
	}
	return t
}

func (t windowTexts) of(w window) *windowText {
	if wt := t[w]; wt != nil {
		return wt
	}
	return newWindowText(w)
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

// headers renders, into h (five headers), RateLimit-Policy (every window of the request), RateLimit
// (the most constraining window first, then every other) and the X-RateLimit-* headers (the most
// constraining window). Reset values are whole seconds, rounded
// up.
func (t windowTexts) headers(h []*corev3.HeaderValue, q *query, states []state, worstIdx int) {
	worst := states[worstIdx]
	worstText := t.of(worst.Window)
	var policy string
	if len(states) == 1 && endpointOfKey(q.Counters[0].Key) == "" {
		policy = worstText.policy
	} else {
		b := make([]byte, 0, 64)
		for i, s := range states {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = appendPolicyItem(b, endpointOfKey(q.Counters[i].Key), s.Window)
		}
		policy = string(b)
	}
	// RateLimit is `<name>;r=<remaining>;t=<reset>`; the X-RateLimit-* values are cut from it.
	var buf [160]byte
	rl := buf[:0]
	if ep := endpointOfKey(q.Counters[worstIdx].Key); ep == "" {
		rl = append(rl, worstText.name...)
	} else {
		rl = appendEndpointPolicyName(rl, ep, worst.Window)
	}
	rl = append(rl, ";r="...)
	r0 := len(rl)
	rl = strconv.AppendInt(rl, worst.Remaining, 10)
	r1 := len(rl)
	rl = append(rl, ";t="...)
	t0 := len(rl)
	rl = strconv.AppendInt(rl, ceilSeconds(worst.ResetIn), 10)
	t1 := len(rl)
	// Then every other window of the request (the draft's RateLimit is a list), so a client, or
	// `tenantgate explain`, sees what remains in each.
	for i, s := range states {
		if i == worstIdx {
			continue
		}
		rl = append(rl, ", "...)
		rl = appendEndpointPolicyName(rl, endpointOfKey(q.Counters[i].Key), s.Window)
		rl = append(rl, ";r="...)
		rl = strconv.AppendInt(rl, s.Remaining, 10)
		rl = append(rl, ";t="...)
		rl = strconv.AppendInt(rl, ceilSeconds(s.ResetIn), 10)
	}
	rateLimit := string(rl)
	h[0].Key, h[0].Value = headerRateLimitPolicy, policy
	h[1].Key, h[1].Value = headerRateLimit, rateLimit
	h[2].Key, h[2].Value = headerXLimit, worstText.max
	h[3].Key, h[3].Value = headerXRemaining, rateLimit[r0:r1]
	h[4].Key, h[4].Value = headerXReset, rateLimit[t0:t1]
}

// appendPolicyItem appends `"<name>";q=<limit>;w=<seconds>` (w rounded up to a whole second, as
// the draft has it in seconds).
func appendPolicyItem(b []byte, endpoint string, w window) []byte {
	b = appendEndpointPolicyName(b, endpoint, w)
	b = append(b, ";q="...)
	b = strconv.AppendInt(b, w.Limit, 10)
	b = append(b, ";w="...)
	return strconv.AppendInt(b, ceilSeconds(w.Period()), 10)
}

// appendPolicyName appends the policy's name of counter c as a structured-field string.
func appendPolicyName(b []byte, c counter, w window) []byte {
	return appendEndpointPolicyName(b, endpointOfKey(c.Key), w)
}

// appendEndpointPolicyName appends the policy's name as a structured-field string: the window
// length, after the endpoint when the counter is an endpoint's (`"search 1m"`, `"1h"`).
func appendEndpointPolicyName(b []byte, endpoint string, w window) []byte {
	b = append(b, '"')
	if endpoint != "" {
		for i := 0; i < len(endpoint); i++ {
			ch := endpoint[i]
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
