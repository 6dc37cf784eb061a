package xds

import (
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// namedCache is a state-of-the-world cache for types a response need not hold in full (route
// configurations, endpoints): a response carries the subscribed resources the client lacks. A
// resource's version is the cache version at which it was last set.
type namedCache struct {
	typeURL string
	prefix  string

	mu      sync.Mutex
	seq     uint64
	res     map[string]namedEntry
	watches watchSet[sotwWatch]
}

type namedEntry struct {
	packed  *anypb.Any
	version string
}

func newNamedCache(typeURL, versionPrefix string) *namedCache {
	return &namedCache{typeURL: typeURL, prefix: versionPrefix, res: map[string]namedEntry{}}
}

func (c *namedCache) version() string { return c.prefix + strconv.FormatUint(c.seq, 10) }

// CreateWatch answers at once when the client lacks a subscribed resource (or sent no version, or
// one of another control plane instance), else when one changes.
func (c *namedCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	if req.GetTypeUrl() != c.typeURL {
		return nil, errors.New("wrong type for this cache: " + req.GetTypeUrl())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := sotwWatch{req: req, sub: sub, out: out}
	replyEmpty := req.GetVersionInfo() == "" || !strings.HasPrefix(req.GetVersionInfo(), c.prefix)
	if c.respond(w, nil, replyEmpty) {
		return func() {}, nil
	}
	return c.watches.add(&c.mu, w), nil
}

func (c *namedCache) update(upserts map[string]packed, deletes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	v := c.version()
	changed := make([]string, 0, len(upserts)+len(deletes))
	for name, p := range upserts {
		c.res[name] = namedEntry{packed: p.any, version: v}
		changed = append(changed, name)
	}
	for _, name := range deletes {
		delete(c.res, name)
		changed = append(changed, name)
	}
	for id, w := range c.watches.open {
		if c.respond(w, changed, false) {
			delete(c.watches.open, id)
		}
	}
}

// respond sends the watch the subscribed resources among names (all subscribed ones when names is
// nil) that it lacks. c.mu is held.
func (c *namedCache) respond(w sotwWatch, names []string, replyEmpty bool) bool {
	returned := w.sub.ReturnedResources()
	subscribed := w.sub.SubscribedResources()
	if names == nil {
		if w.sub.IsWildcard() {
			for name := range c.res {
				names = append(names, name)
			}
		} else {
			for name := range subscribed {
				names = append(names, name)
			}
		}
	}
	var list []*anypb.Any
	var sent []string
	var gone []string
	for _, name := range names {
		if _, ok := subscribed[name]; !ok && !w.sub.IsWildcard() {
			continue
		}
		e, exists := c.res[name]
		known, wasSent := returned[name]
		switch {
		case exists && (!wasSent || known != e.version):
			list = append(list, e.packed)
			sent = append(sent, name)
		case !exists && wasSent:
			gone = append(gone, name) // state-of-the-world cannot say so; forget it was sent
		}
	}
	if len(list) == 0 && !replyEmpty {
		return false
	}
	next := maps.Clone(returned)
	if next == nil {
		next = map[string]string{}
	}
	for _, name := range sent {
		next[name] = c.res[name].version
	}
	for _, name := range gone {
		delete(next, name)
	}
	w.out <- &cache.PassthroughResponse{
		Request:           w.req,
		DiscoveryResponse: &discoveryv3.DiscoveryResponse{VersionInfo: c.version(), TypeUrl: c.typeURL, Resources: list},
		ReturnedResources: next,
	}
	return true
}
