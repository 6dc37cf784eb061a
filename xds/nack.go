package xds

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// maxNACKEntries bounds the rejection state: one entry per node and type in backoff.
const maxNACKEntries = 100_000

// nacks tracks, per Envoy node and resource type, the configs that were rejected, and how long to
// wait before pushing that type to that node again. Its methods are called concurrently from every
// stream's goroutine.
type nacks struct {
	initial, max time.Duration
	log          *slog.Logger
	counter      *prometheus.CounterVec
	now          func() time.Time

	mu      sync.Mutex
	entries map[nackKey]*nackEntry
	streams map[int64]string // stream id -> node id, for requests that do not repeat the node
	sent    map[sentKey]sentResponse
}

type sentKey struct {
	stream  int64
	typeURL string
}

// sentResponse is the last response of a type on a stream: a request is its ACK only if it names
// this nonce (and, over state-of-the-world, this version).
type sentResponse struct{ nonce, version string }

type nackKey struct{ node, typeURL string }

type nackEntry struct {
	backoff time.Duration
	until   time.Time
	lastErr string
}

func newNACKs(initial, max time.Duration, log *slog.Logger, counter *prometheus.CounterVec) *nacks {
	return &nacks{
		initial: initial, max: max, log: log, counter: counter, now: time.Now,
		entries: map[nackKey]*nackEntry{},
		streams: map[int64]string{},
		sent:    map[sentKey]sentResponse{},
	}
}

// responded records the response just sent on a stream. version is empty for delta.
func (n *nacks) responded(streamID int64, typeURL, nonce, version string) {
	n.mu.Lock()
	n.sent[sentKey{streamID, typeURL}] = sentResponse{nonce: nonce, version: version}
	n.mu.Unlock()
}

// observe records one request from a stream: a rejection starts or extends the node's backoff for
// the type, an acceptance of the latest response ends it. Other requests (subscription changes,
// which over state-of-the-world still carry the last accepted version) change nothing.
func (n *nacks) observe(streamID int64, node *corev3.Node, typeURL, nonce, version string, delta bool, rejected *errorDetail) {
	n.mu.Lock()
	defer n.mu.Unlock()
	id := node.GetId()
	if id != "" {
		n.streams[streamID] = id
	} else {
		id = n.streams[streamID]
	}
	key := nackKey{node: id, typeURL: typeURL}
	e := n.entries[key]
	if rejected == nil {
		last, ok := n.sent[sentKey{streamID, typeURL}]
		ack := ok && nonce != "" && nonce == last.nonce && (delta || version == last.version)
		if e != nil && ack {
			delete(n.entries, key)
			n.log.Info("envoy accepted the config again", slog.String("node", id), slog.String("type", shortType(typeURL)))
		}
		return
	}
	n.counter.WithLabelValues(shortType(typeURL)).Inc()
	if e == nil {
		if len(n.entries) >= maxNACKEntries && !n.evictExpired() {
			n.log.Warn("too many rejecting envoys tracked; not backing off this one", slog.String("node", id))
			return
		}
		e = &nackEntry{}
		n.entries[key] = e
	}
	e.backoff = min(max(e.backoff*2, n.initial), n.max)
	e.until = n.now().Add(e.backoff)
	if rejected.message != e.lastErr {
		e.lastErr = rejected.message
		n.log.Warn("envoy rejected the config; backing off before pushing this type to it again",
			slog.String("node", id), slog.String("type", shortType(typeURL)), slog.String("nonce", nonce),
			slog.String("error", rejected.message), slog.Duration("backoff", e.backoff))
	}
}

// evictExpired drops entries whose backoff ended long ago. n.mu is held.
func (n *nacks) evictExpired() bool {
	cutoff := n.now().Add(-n.max)
	freed := false
	for k, e := range n.entries {
		if e.until.Before(cutoff) {
			delete(n.entries, k)
			freed = true
		}
	}
	return freed
}

// closed forgets a stream (not the node's backoff: a reconnecting Envoy stays in backoff).
func (n *nacks) closed(streamID int64) {
	n.mu.Lock()
	delete(n.streams, streamID)
	for k := range n.sent {
		if k.stream == streamID {
			delete(n.sent, k)
		}
	}
	n.mu.Unlock()
}

// delay is how long to hold a watch of the node for the type.
func (n *nacks) delay(node *corev3.Node, typeURL string) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	e := n.entries[nackKey{node: node.GetId(), typeURL: typeURL}]
	if e == nil {
		return 0
	}
	return e.until.Sub(n.now())
}

type errorDetail struct{ message string }

func detailOf(msg interface{ GetMessage() string }, present bool) *errorDetail {
	if !present {
		return nil
	}
	return &errorDetail{message: msg.GetMessage()}
}

// backoffCache holds a watch for as long as its node is in backoff for the type, so a rejected config
// is not re-sent at once (go-control-plane would answer a NACK immediately, with the same config, forever).
type backoffCache struct {
	inner cache.Cache
	nacks *nacks
}

func (b *backoffCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	if d := b.nacks.delay(req.GetNode(), req.GetTypeUrl()); d > 0 {
		return delayed(d, func() (func(), error) { return b.inner.CreateWatch(req, sub, out) }, b.nacks.log), nil
	}
	return b.inner.CreateWatch(req, sub, out)
}

func (b *backoffCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	if d := b.nacks.delay(req.GetNode(), req.GetTypeUrl()); d > 0 {
		return delayed(d, func() (func(), error) { return b.inner.CreateDeltaWatch(req, sub, out) }, b.nacks.log), nil
	}
	return b.inner.CreateDeltaWatch(req, sub, out)
}

func (b *backoffCache) Fetch(ctx context.Context, req *cache.Request) (cache.Response, error) {
	return b.inner.Fetch(ctx, req)
}

// delayed creates the watch after d, unless it is cancelled first.
func delayed(d time.Duration, create func() (func(), error), log *slog.Logger) func() {
	var (
		mu       sync.Mutex
		canceled bool
		cancel   func()
	)
	timer := time.AfterFunc(d, func() {
		mu.Lock()
		defer mu.Unlock()
		if canceled {
			return
		}
		c, err := create()
		if err != nil {
			log.Error("create delayed xds watch", slog.Any("error", err))
			return
		}
		cancel = c
	})
	return func() {
		mu.Lock()
		canceled = true
		timer.Stop()
		c := cancel
		cancel = nil
		mu.Unlock()
		if c != nil {
			c()
		}
	}
}

func observeSotw(n *nacks, streamID int64, req *discoveryv3.DiscoveryRequest) {
	n.observe(streamID, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetVersionInfo(), false,
		detailOf(req.GetErrorDetail(), req.GetErrorDetail() != nil))
}

func observeDelta(n *nacks, streamID int64, req *discoveryv3.DeltaDiscoveryRequest) {
	n.observe(streamID, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), "", true,
		detailOf(req.GetErrorDetail(), req.GetErrorDetail() != nil))
}
