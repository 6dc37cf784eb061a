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

// linear is a LinearCache: resources versioned one by one, so a change is serialized once (the cache
// keeps the marshaled bytes) and a delta client receives only what changed. Over state-of-the-world it
// returns the full set for listeners and clusters, as Envoy requires.
type linear struct{ *cache.LinearCache }

func (l linear) update(upserts map[string]types.Resource, deletes []string) error {
	return l.UpdateResources(upserts, deletes)
}

func (l linear) len() int { return l.NumResources() }

// scopes serves scoped route configurations: a LinearCache for delta clients, and for
// state-of-the-world clients a cache that always answers with every scope, because Envoy treats an
// SRDS response as the complete set (LinearCache would send only the changed scopes, and every other
// tenant's scope would vanish).
type scopes struct {
	delta *cache.LinearCache
	sotw  *fullStateCache
}

func (s scopes) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	return s.sotw.CreateWatch(req, sub, out)
}

func (s scopes) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	return s.delta.CreateDeltaWatch(req, sub, out)
}

func (s scopes) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not served")
}

func (s scopes) update(upserts map[string]types.Resource, deletes []string) error {
	if err := s.sotw.update(upserts, deletes); err != nil {
		return err
	}
	return s.delta.UpdateResources(upserts, deletes)
}

func (s scopes) len() int { return s.delta.NumResources() }

// caches holds one cache per served type and routes each watch to its type's cache.
type caches struct {
	byType map[string]typeCache
}

func newCaches(versionPrefix string) *caches {
	c := &caches{byType: map[string]typeCache{}}
	for _, typ := range envoybuild.TypeOrder {
		lc := cache.NewLinearCache(typ, cache.WithVersionPrefix(versionPrefix))
		if typ == resource.ScopedRouteType {
			c.byType[typ] = scopes{delta: lc, sotw: newFullStateCache(typ, versionPrefix)}
			continue
		}
		c.byType[typ] = linear{lc}
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
