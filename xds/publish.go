package xds

import (
	"fmt"
	"log/slog"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// state is what has been published: per tenant, the names and versions of its resources and the
// clusters its routes use; and how many published routes use each cluster. Only the publisher
// goroutine touches it. It keeps no built messages: those live on only as marshaled bytes in the
// caches.
type state struct {
	tenants     map[string]record // by tenant id
	clusters    map[string]bool   // every published cluster
	clusterRefs map[string]int    // published route configurations per cluster
}

// record is one tenant's published resources.
type record struct {
	res           [4]ref // in tenantTypes order
	routeClusters []string
}

// ref names one published resource and its version; an empty name is none.
type ref struct{ name, version string }

// tenantTypes are the types a tenant has resources of, as indexed in record.res.
var tenantTypes = [4]string{resource.ScopedRouteType, resource.RouteType, resource.ClusterType, resource.EndpointType}

const clusterIdx = 2

func newState() *state {
	return &state{tenants: map[string]record{}, clusters: map[string]bool{}, clusterRefs: map[string]int{}}
}

// changeSet is a set of upserts and deletions by type.
type changeSet struct {
	upserts map[string]map[string]packed
	deletes map[string][]string
}

func newChangeSet() changeSet {
	return changeSet{upserts: map[string]map[string]packed{}, deletes: map[string][]string{}}
}

func (c changeSet) upsert(typ, name string, p packed) {
	if c.upserts[typ] == nil {
		c.upserts[typ] = map[string]packed{}
	}
	c.upserts[typ][name] = p
}

func (c changeSet) delete(typ, name string) { c.deletes[typ] = append(c.deletes[typ], name) }

func (c changeSet) empty() bool { return len(c.upserts) == 0 && len(c.deletes) == 0 }

func (c changeSet) merge(o changeSet) {
	for typ, m := range o.upserts {
		for name, p := range m {
			c.upsert(typ, name, p)
		}
	}
	for typ, names := range o.deletes {
		c.deletes[typ] = append(c.deletes[typ], names...)
	}
}

// tenantDiff is one tenant's change: what to send, and its record once sent.
type tenantDiff struct {
	id      string
	next    record
	present bool
	changes changeSet
}

// diffTenant packs the tenant's resources as they should be now and compares them with what was
// published, by content version.
func (s *state) diffTenant(id string, next envoybuild.TenantResources, present bool) (tenantDiff, error) {
	prev, had := s.tenants[id]
	d := tenantDiff{id: id, present: present, changes: newChangeSet()}
	if present {
		msgs := [4]proto.Message{next.Scope, next.Route, next.Cluster, next.Endpoints}
		names := [4]string{next.Scope.GetName(), next.Route.GetName(), next.Cluster.GetName(), next.Endpoints.GetClusterName()}
		for i, m := range msgs {
			if names[i] == "" {
				continue
			}
			p, err := pack(tenantTypes[i], m)
			if err != nil {
				return tenantDiff{}, fmt.Errorf("tenant %s: %w", id, err)
			}
			d.next.res[i] = ref{name: names[i], version: p.version}
			if !had || prev.res[i] != d.next.res[i] {
				d.changes.upsert(tenantTypes[i], names[i], p)
			}
		}
		d.next.routeClusters = envoybuild.RouteClusters(next.Route)
	}
	if had {
		for i, r := range prev.res {
			if r.name != "" && r.name != d.next.res[i].name {
				d.changes.delete(tenantTypes[i], r.name)
			}
		}
	}
	return d, nil
}

// checkDiff verifies that after the diff every route the tenant publishes sends to a cluster that
// exists, and that no cluster it removes is still used by another published route.
func (s *state) checkDiff(d tenantDiff) error {
	own := d.next.res[clusterIdx].name
	for _, c := range d.next.routeClusters {
		if c != own && !s.clusters[c] {
			return fmt.Errorf("%w: tenant %s routes to missing cluster %s", envoybuild.ErrDangling, d.id, c)
		}
	}
	prev := s.tenants[d.id]
	for _, c := range d.changes.deletes[resource.ClusterType] {
		refs := s.clusterRefs[c]
		if slices.Contains(prev.routeClusters, c) {
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
		for _, c := range prev.routeClusters {
			if s.clusterRefs[c]--; s.clusterRefs[c] <= 0 {
				delete(s.clusterRefs, c)
			}
		}
		if n := prev.res[clusterIdx].name; n != "" {
			delete(s.clusters, n)
		}
	}
	if !d.present {
		delete(s.tenants, d.id)
		return
	}
	s.tenants[d.id] = d.next
	for _, c := range d.next.routeClusters {
		s.clusterRefs[c]++
	}
	if n := d.next.res[clusterIdx].name; n != "" {
		s.clusters[n] = true
	}
}

// publishStatic writes the tenant-independent resources.
func (s *Server) publishStatic() error {
	st := s.params.Static()
	r := envoybuild.NewResources()
	r.AddStatic(st)
	for _, typ := range envoybuild.TypeOrder {
		up := map[string]packed{}
		for name, m := range r[typ] {
			p, err := pack(typ, m)
			if err != nil {
				return err
			}
			up[name] = p
		}
		s.caches.update(typ, up, nil)
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
		d, err := s.state.diffTenant(id, next, present)
		if err != nil {
			return err
		}
		if d.changes.empty() {
			continue
		}
		if err := s.state.checkDiff(d); err != nil {
			s.metrics.rejected.Inc()
			s.log.Error("tenant change not published; its last good config stays", slog.String("tenant", id), slog.Any("error", err))
			continue
		}
		s.state.commit(d)
		all.merge(d.changes)
	}
	s.apply(all)
	return nil
}

// apply pushes a change set in make-before-break order.
func (s *Server) apply(c changeSet) {
	steps := []struct {
		typ              string
		upserts, deletes bool
	}{
		{resource.EndpointType, true, false},
		{resource.ClusterType, true, false},
		{resource.RouteType, true, false},
		{resource.ScopedRouteType, true, true},
		{resource.RouteType, false, true},
		{resource.ClusterType, false, true},
		{resource.EndpointType, false, true},
	}
	for _, st := range steps {
		var up map[string]packed
		var del []string
		if st.upserts {
			up = c.upserts[st.typ]
		}
		if st.deletes {
			del = c.deletes[st.typ]
		}
		s.caches.update(st.typ, up, del)
	}
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
