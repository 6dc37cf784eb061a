package xds

import (
	"errors"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

func TestCheckDiff_RefusesDanglingClusterReferences(t *testing.T) {
	cfg := config.Default()
	p := envoybuild.ParamsFrom(&cfg)
	pool := newTenant("pooled", tenant.Active)
	silo := newTenant("siloed", tenant.Active, tenant.Endpoint{Host: "10.0.0.1", Port: 80})

	tests := []struct {
		name  string
		setup func(s *state) tenantDiff
	}{
		{"route to a cluster nobody publishes", func(s *state) tenantDiff {
			next, _ := p.Tenant(&pool) // pool cluster never published in this state
			d, err := s.diffTenant(pool.ID, next, true)
			if err != nil {
				t.Fatal(err)
			}
			return d
		}},
		{"removing a cluster another route still uses", func(s *state) tenantDiff {
			s.clusters[envoybuild.PoolCluster] = true
			next, _ := p.Tenant(&silo)
			d, _ := s.diffTenant(silo.ID, next, true)
			s.commit(d)
			s.clusterRefs["tenant-siloed"]++ // a second route configuration uses the silo's cluster
			d, _ = s.diffTenant(silo.ID, envoybuild.TenantResources{}, false)
			if len(d.changes.deletes[resource.ClusterType]) != 1 {
				t.Fatalf("suspension should delete the silo cluster: %+v", d.changes.deletes)
			}
			return d
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newState()
			d := tt.setup(s)
			if err := s.checkDiff(d); !errors.Is(err, envoybuild.ErrDangling) {
				t.Fatalf("checkDiff = %v, want a dangling reference", err)
			}
		})
	}
}

func TestDiffTenant_UnchangedTenantSendsNothing(t *testing.T) {
	cfg := config.Default()
	p := envoybuild.ParamsFrom(&cfg)
	s := newState()
	s.clusters[envoybuild.PoolCluster] = true
	tn := newTenant("steady", tenant.Active, tenant.Endpoint{Host: "10.0.0.3", Port: 80})
	next, _ := p.Tenant(&tn)
	d, err := s.diffTenant(tn.ID, next, true)
	if err != nil {
		t.Fatal(err)
	}
	if d.changes.empty() {
		t.Fatal("a new tenant produced no changes")
	}
	if err := s.checkDiff(d); err != nil {
		t.Fatal(err)
	}
	s.commit(d)
	again, _ := p.Tenant(&tn)
	d, err = s.diffTenant(tn.ID, again, true)
	if err != nil {
		t.Fatal(err)
	}
	if !d.changes.empty() {
		t.Fatalf("rebuilding an unchanged tenant produced changes: %+v", d.changes)
	}
}
