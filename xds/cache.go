package xds

import (
	"context"
	"errors"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// typeCache is the cache of one resource type: what the ADS server watches and the publisher writes.
type typeCache interface {
	cache.Cache
	update(upserts map[string]types.Resource, deletes []string) error
	len() int
}

// split serves each type twice over the same resources: state-of-the-world clients from a
// go-control-plane LinearCache (which returns the full set for listeners and clusters, as Envoy
// requires) or, for scopes, from a cache that always returns every scope (Envoy treats an SRDS
// response as the complete set; LinearCache would send only the changed scopes, and every other
// tenant's scope would vanish); delta clients from a deltaCache, whose cost follows the change.
type split struct {
	sotw  sotwCache
	delta *deltaCache
}

type sotwCache interface {
	cache.Cache
	update(upserts map[string]types.Resource, deletes []string) error
}

// linear adapts a LinearCache.
type linear struct{ *cache.LinearCache }

func (l linear) update(upserts map[string]types.Resource, deletes []string) error {
	return l.UpdateResources(upserts, deletes)
}

func (s split) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	return s.sotw.CreateWatch(req, sub, out)
}

func (s split) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	return s.delta.CreateDeltaWatch(req, sub, out)
}

func (s split) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not served")
}

func (s split) update(upserts map[string]types.Resource, deletes []string) error {
	if err := s.delta.update(upserts, deletes); err != nil {
		return err
	}
	return s.sotw.update(upserts, deletes)
}

func (s split) len() int { return s.delta.len() }

// deltaLogCap bounds each type's change log; a delta client further behind rescans.
const deltaLogCap = 100_000

// caches holds one cache per served type and routes each watch to its type's cache.
type caches struct {
	byType map[string]typeCache
}

func newCaches(versionPrefix string) *caches {
	c := &caches{byType: map[string]typeCache{}}
	for _, typ := range envoybuild.TypeOrder {
		var sotw sotwCache = linear{cache.NewLinearCache(typ, cache.WithVersionPrefix(versionPrefix))}
		if typ == resource.ScopedRouteType {
			sotw = newFullStateCache(typ, versionPrefix)
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
func (c *caches) update(typ string, upserts map[string]proto.Message, deletes []string) error {
	if len(upserts) == 0 && len(deletes) == 0 {
		return nil
	}
	res := make(map[string]types.Resource, len(upserts))
	for name, m := range upserts {
		res[name] = m
	}
	if err := c.byType[typ].update(res, deletes); err != nil {
		return fmt.Errorf("update %s cache: %w", shortType(typ), err)
	}
	return nil
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
