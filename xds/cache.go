package xds

import (
	"context"
	"errors"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// split serves one type to both kinds of client from the same marshaled resources:
//   - delta clients from a deltaCache, whose cost follows the change, not the number of tenants;
//   - state-of-the-world clients from a fullStateCache for listeners, clusters and scopes (Envoy
//     treats each such response as the complete set; go-control-plane's LinearCache would send only
//     the changed scopes, and every other tenant's scope would vanish), and from a namedCache for
//     route configurations and endpoints.
type split struct {
	sotw  sotwCache
	delta *deltaCache
}

// sotwCache is what split needs of its state-of-the-world half; delta and fetch requests never reach it.
type sotwCache interface {
	CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error)
	update(upserts map[string]packed, deletes []string)
}

func (s split) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	return s.sotw.CreateWatch(req, sub, out)
}

func (s split) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	return s.delta.CreateDeltaWatch(req, sub, out)
}

func (s split) update(upserts map[string]packed, deletes []string) {
	s.delta.update(upserts, deletes)
	s.sotw.update(upserts, deletes)
}

func (s split) len() int { return s.delta.len() }

// deltaLogCap bounds each type's change log; a delta client further behind rescans.
const deltaLogCap = 100_000

// caches holds one cache per served type and routes each watch to its type's cache.
type caches struct {
	byType map[string]split
}

func newCaches(versionPrefix string) *caches {
	c := &caches{byType: map[string]split{}}
	for _, typ := range envoybuild.TypeOrder {
		var sotw sotwCache
		switch typ {
		case resource.ListenerType, resource.ClusterType, resource.ScopedRouteType:
			sotw = newFullStateCache(typ, versionPrefix)
		default:
			sotw = newNamedCache(typ, versionPrefix)
		}
		c.byType[typ] = split{sotw: sotw, delta: newDeltaCache(typ, versionPrefix, deltaLogCap)}
	}
	return c
}

// never is the watch of a type no cache serves: it stays open and never answers, so an Envoy asking
// for a type tenantgate does not serve keeps its ADS stream (and every other type on it).
func never() func() { return func() {} }

func (c *caches) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	tc, ok := c.byType[req.GetTypeUrl()]
	if !ok {
		return never(), nil
	}
	return tc.CreateWatch(req, sub, out)
}

func (c *caches) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	tc, ok := c.byType[req.GetTypeUrl()]
	if !ok {
		return never(), nil
	}
	return tc.CreateDeltaWatch(req, sub, out)
}

func (c *caches) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch (REST xDS) is not served; use ADS")
}

// update writes one type's changes.
func (c *caches) update(typ string, upserts map[string]packed, deletes []string) {
	if len(upserts) == 0 && len(deletes) == 0 {
		return
	}
	c.byType[typ].update(upserts, deletes)
}

// shortType is a type URL's last name ("Cluster"), a bounded metric label.
func shortType(typeURL string) string {
	for i := len(typeURL) - 1; i >= 0; i-- {
		if typeURL[i] == '.' {
			return typeURL[i+1:]
		}
	}
	return typeURL
}
