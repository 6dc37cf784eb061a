package xds

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// state is what has been published: the resources of every tenant that has any, and how many
// published routes send to each cluster. Only the publisher goroutine touches it.
type state struct {
	tenants     map[string]envoybuild.TenantResources // by tenant id
	clusters    map[string]bool                       // every published cluster
	clusterRefs map[string]int                        // published route configurations per cluster
}

func newState() *state {
	return &state{
		tenants:     map[string]envoybuild.TenantResources{},
		clusters:    map[string]bool{},
		clusterRefs: map[string]int{},
	}
}

// changeSet is a set of upserts and deletions by type.
type changeSet struct {
	upserts map[string]map[string]proto.Message
	deletes map[string][]string
}

func newChangeSet() changeSet {
	return changeSet{upserts: map[string]map[string]proto.Message{}, deletes: map[string][]string{}}
}

func (c changeSet) upsert(typ, name string, m proto.Message) {
	if c.upserts[typ] == nil {
		c.upserts[typ] = map[string]proto.Message{}
	}
	c.upserts[typ][name] = m
}

func (c changeSet) delete(typ, name string) { c.deletes[typ] = append(c.deletes[typ], name) }

func (c changeSet) empty() bool { return len(c.upserts) == 0 && len(c.deletes) == 0 }

// tenantDiff is one tenant's change: what to send and what it will look like once sent.
type tenantDiff struct {
	id      string
	next    envoybuild.TenantResources
	present bool // next holds resources (the tenant is active)
	changes changeSet
}

// diffTenant compares the tenant's published resources with the ones it should have now.
func (s *state) diffTenant(id string, next envoybuild.TenantResources, present bool) (tenantDiff, bool) {
	prev, had := s.tenants[id]
	d := tenantDiff{id: id, next: next, present: present, changes: newChangeSet()}
	pairs := []struct {
		typ        string
		prev, next proto.Message
		prevName   string
		nextName   string
	}{
		{resource.ScopedRouteType, prev.Scope, next.Scope, prev.Scope.GetName(), next.Scope.GetName()},
		{resource.RouteType, prev.Route, next.Route, prev.Route.GetName(), next.Route.GetName()},
		{resource.ClusterType, prev.Cluster, next.Cluster, prev.Cluster.GetName(), next.Cluster.GetName()},
		{resource.EndpointType, prev.Endpoints, next.Endpoints, prev.Endpoints.GetClusterName(), next.Endpoints.GetClusterName()},
	}
	for _, p := range pairs {
		hasPrev := had && p.prevName != ""
		hasNext := present && p.nextName != ""
		if hasNext && (!hasPrev || p.prevName != p.nextName || !proto.Equal(p.prev, p.next)) {
			d.changes.upsert(p.typ, p.nextName, p.next)
		}
		if hasPrev && (!hasNext || p.prevName != p.nextName) {
			d.changes.delete(p.typ, p.prevName)
		}
	}
	return d, !d.changes.empty()
}

// checkDiff verifies that after the diff every route the tenant publishes sends to a cluster that
// exists, and that no cluster it removes is still used by a published route.
func (s *state) checkDiff(d tenantDiff) error {
	if d.present {
		for _, c := range envoybuild.RouteClusters(d.next.Route) {
			own := d.next.Cluster != nil && d.next.Cluster.GetName() == c
			if !own && !s.clusters[c] {
				return fmt.Errorf("%w: tenant %s route %s sends to missing cluster %s", envoybuild.ErrDangling, d.id, d.next.Route.GetName(), c)
			}
		}
	}
	prev := s.tenants[d.id]
	for _, c := range d.changes.deletes[resource.ClusterType] {
		refs := s.clusterRefs[c]
		if prev.Route != nil && slices.Contains(envoybuild.RouteClusters(prev.Route), c) {
			refs-- // the tenant's own route, which changes with it
		}
		if refs > 0 {
			return fmt.Errorf("%w: tenant %s removes cluster %s that %d other route configurations use", envoybuild.ErrDangling, d.id, c, refs)
		}
	}
	return nil
}

// commit records the diff as published.
func (s *state) commit(d tenantDiff) {
	if prev, ok := s.tenants[d.id]; ok {
		for _, c := range envoybuild.RouteClusters(prev.Route) {
			if s.clusterRefs[c]--; s.clusterRefs[c] <= 0 {
				delete(s.clusterRefs, c)
			}
		}
		if prev.Cluster != nil {
			delete(s.clusters, prev.Cluster.GetName())
		}
	}
	if !d.present {
		delete(s.tenants, d.id)
		return
	}
	s.tenants[d.id] = d.next
	for _, c := range envoybuild.RouteClusters(d.next.Route) {
		s.clusterRefs[c]++
	}
	if d.next.Cluster != nil {
		s.clusters[d.next.Cluster.GetName()] = true
	}
}

// publishStatic writes the tenant-independent resources.
func (s *Server) publishStatic() error {
	st := s.params.Static()
	r := envoybuild.NewResources()
	r.AddStatic(st)
	for _, typ := range envoybuild.TypeOrder {
		if err := s.caches.update(typ, r[typ], nil); err != nil {
			return err
		}
	}
	for _, c := range st.Clusters {
		s.state.clusters[c.GetName()] = true
	}
	return nil
}

// publish builds the changed tenants from the snapshot and pushes what differs, make-before-break:
// endpoints and clusters first, then routes and scopes, and removals in reverse (scopes, routes,
// then clusters and endpoints). A tenant whose change would leave a dangling reference is not
// published (its last good resources stay) and is counted.
func (s *Server) publish(snap *snapshot.Snapshot, ids []string) error {
	all := newChangeSet()
	for _, id := range ids {
		var next envoybuild.TenantResources
		present := false
		if t, ok := snap.ByID(id); ok {
			next, present = s.params.Tenant(t)
		}
		d, changed := s.state.diffTenant(id, next, present)
		if !changed {
			continue
		}
		if err := s.state.checkDiff(d); err != nil {
			s.metrics.rejected.Inc()
			s.log.Error("tenant change not published; its last good config stays", slog.String("tenant", id), slog.Any("error", err))
			continue
		}
		s.state.commit(d)
		for typ, m := range d.changes.upserts {
			for name, res := range m {
				all.upsert(typ, name, res)
			}
		}
		for typ, names := range d.changes.deletes {
			all.deletes[typ] = append(all.deletes[typ], names...)
		}
	}
	return s.apply(all)
}

// apply pushes a change set in make-before-break order.
func (s *Server) apply(c changeSet) error {
	steps := []struct {
		typ     string
		upserts bool
		deletes bool
	}{
		{resource.EndpointType, true, false},
		{resource.ClusterType, true, false},
		{resource.RouteType, true, false},
		{resource.ScopedRouteType, true, true},
		{resource.RouteType, false, true},
		{resource.ClusterType, false, true},
		{resource.EndpointType, false, true},
	}
	var errs []error
	for _, st := range steps {
		var up map[string]proto.Message
		var del []string
		if st.upserts {
			up = c.upserts[st.typ]
		}
		if st.deletes {
			del = c.deletes[st.typ]
		}
		if err := s.caches.update(st.typ, up, del); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// activeIDs lists every tenant id of a snapshot.
func activeIDs(snap *snapshot.Snapshot) []string {
	ids := make([]string, 0, snap.Len())
	snap.All(func(t *tenant.Tenant) bool {
		ids = append(ids, t.ID)
		return true
	})
	return ids
}
