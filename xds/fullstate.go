package xds

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// fullStateCache is a state-of-the-world cache whose every response holds every resource (that the
// subscription names), as Envoy requires for listeners, clusters and scopes: it treats each such
// response as the complete set. Resources come marshaled; the list of them is built once per version
// and shared by every response.
type fullStateCache struct {
	typeURL string
	prefix  string

	mu        sync.Mutex
	version   uint64
	resources map[string]*anypb.Any
	// sorted and returned are built lazily once per version and shared by every response.
	sorted   []*anypb.Any
	returned map[string]string
	watches  watchSet[sotwWatch]
}

// sotwWatch is an open state-of-the-world watch, of a fullStateCache or a namedCache.
type sotwWatch struct {
	req *cache.Request
	sub cache.Subscription
	out chan cache.Response
}

func newFullStateCache(typeURL, versionPrefix string) *fullStateCache {
	return &fullStateCache{
		typeURL:   typeURL,
		prefix:    versionPrefix,
		resources: map[string]*anypb.Any{},
	}
}

func (c *fullStateCache) versionString() string { return c.prefix + strconv.FormatUint(c.version, 10) }

// CreateWatch answers at once when the client was not sent the current version, and otherwise when
// the resources next change.
func (c *fullStateCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	if req.GetTypeUrl() != c.typeURL {
		return nil, errors.New("wrong type for this cache: " + req.GetTypeUrl())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := sotwWatch{req: req, sub: sub, out: out}
	// A first request (no version) or one from another control plane instance always gets an answer;
	// otherwise only a client that was not sent the current version does. A rejected version counts
	// as sent: the rejection alone never triggers a resend.
	if req.GetVersionInfo() == "" || !strings.HasPrefix(req.GetVersionInfo(), c.prefix) || c.stale(sub) {
		c.respond(w)
		return func() {}, nil
	}
	return c.watches.add(&c.mu, w), nil
}

// stale reports whether the subscription was last sent something other than the current version.
// c.mu is held.
func (c *fullStateCache) stale(sub cache.Subscription) bool {
	returned := sub.ReturnedResources()
	want := len(c.resources)
	if !sub.IsWildcard() {
		want = 0
		for name := range sub.SubscribedResources() {
			if _, ok := c.resources[name]; ok {
				want++
			}
		}
	}
	if len(returned) != want {
		return true
	}
	current := c.versionString()
	for _, v := range returned {
		return v != current
	}
	return false
}

// update applies the changes and answers every open watch with the new full set.
func (c *fullStateCache) update(upserts map[string]packed, deletes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, p := range upserts {
		c.resources[name] = p.any
	}
	for _, name := range deletes {
		delete(c.resources, name)
	}
	c.version++
	c.sorted, c.returned = nil, nil
	for id, w := range c.watches.open {
		c.respond(w)
		delete(c.watches.open, id)
	}
}

// respond sends the full set to one watch. c.mu is held.
func (c *fullStateCache) respond(w sotwWatch) {
	version := c.versionString()
	var list []*anypb.Any
	var returned map[string]string
	if w.sub.IsWildcard() {
		c.buildShared(version)
		list, returned = c.sorted, c.returned
	} else {
		returned = map[string]string{}
		names := make([]string, 0, len(w.sub.SubscribedResources()))
		for name := range w.sub.SubscribedResources() {
			if _, ok := c.resources[name]; ok {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			list = append(list, c.resources[name])
			returned[name] = version
		}
	}
	w.out <- &cache.PassthroughResponse{
		Request:           w.req,
		DiscoveryResponse: &discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: c.typeURL, Resources: list},
		ReturnedResources: returned,
	}
}

func (c *fullStateCache) buildShared(version string) {
	if c.returned != nil {
		return
	}
	names := make([]string, 0, len(c.resources))
	for name := range c.resources {
		names = append(names, name)
	}
	slices.Sort(names)
	c.sorted = make([]*anypb.Any, 0, len(names))
	c.returned = make(map[string]string, len(names))
	for _, name := range names {
		c.sorted = append(c.sorted, c.resources[name])
		c.returned[name] = version
	}
}
