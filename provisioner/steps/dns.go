package steps

import (
	"context"

	"github.com/tenantgate/tenantgate/provisioner/dns"
	"github.com/tenantgate/tenantgate/provisioner/saga"
)

// madeDNS is what the dns step records.
type madeDNS struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Target string `json:"target"`
}

// dnsStep gives the tenant <slug>.<base_domain> through the configured provider.
type dnsStep struct{ d *Deps }

func (s *dnsStep) Name() string { return DNS }

func (s *dnsStep) record(spec saga.Spec) dns.Record {
	return dns.NewRecord(spec.TenantID, spec.Slug, s.d.BaseDomain, s.d.DNSConfig.Target, s.d.DNSConfig.TTL)
}

func (s *dnsStep) Do(ctx context.Context, r *saga.Run) error {
	rec := s.record(r.Spec)
	if err := s.d.DNS.Ensure(ctx, rec); err != nil {
		return err
	}
	return r.Record(DNS, madeDNS{Name: rec.Name, Type: rec.Type, Target: rec.Target})
}

func (s *dnsStep) Undo(ctx context.Context, r *saga.Run) error {
	return s.d.DNS.Remove(ctx, s.record(r.Spec))
}
