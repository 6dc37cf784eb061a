package dns

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tenantgate/tenantgate/provisioner/kube"
)

// Record is one tenant's DNS record.
type Record struct {
	TenantID string
	Slug     string
	Name     string // <slug>.<base_domain>
	Type     string // CNAME, A or AAAA
	Target   string
	TTL      int64
}

// NewRecord returns the record for a tenant pointing at target (a host name or an IP address).
func NewRecord(tenantID, slug, baseDomain, target string, ttl int64) Record {
	typ := "CNAME"
	if ip, err := netip.ParseAddr(target); err == nil {
		typ = "A"
		if ip.Is6() {
			typ = "AAAA"
		}
	}
	return Record{TenantID: tenantID, Slug: slug, Name: slug + "." + baseDomain, Type: typ, Target: target, TTL: ttl}
}

// Provider makes and removes records. Both are idempotent.
type Provider interface {
	Ensure(ctx context.Context, r Record) error
	Remove(ctx context.Context, r Record) error
}

// Execer runs a statement (a pool or a transaction).
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Postgres records records in a table and does nothing else.
type Postgres struct {
	db    Execer
	table string
}

// NewPostgres returns the record-only provider over table (schema-qualified) in db.
func NewPostgres(db Execer, schema string) *Postgres {
	return &Postgres{db: db, table: pgx.Identifier{schema, "dns_records"}.Sanitize()}
}

// Ensure implements Provider.
func (p *Postgres) Ensure(ctx context.Context, r Record) error {
	_, err := p.db.Exec(ctx, `INSERT INTO `+p.table+` (name, tenant_id, type, target, ttl) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (name) DO UPDATE SET type = EXCLUDED.type, target = EXCLUDED.target, ttl = EXCLUDED.ttl
		WHERE `+p.table+`.tenant_id = EXCLUDED.tenant_id`, r.Name, r.TenantID, r.Type, r.Target, r.TTL)
	if err != nil {
		return fmt.Errorf("dns: record %s: %w", r.Name, err)
	}
	return nil
}

// Remove implements Provider.
func (p *Postgres) Remove(ctx context.Context, r Record) error {
	if _, err := p.db.Exec(ctx, `DELETE FROM `+p.table+` WHERE name = $1 AND tenant_id = $2`, r.Name, r.TenantID); err != nil {
		return fmt.Errorf("dns: remove %s: %w", r.Name, err)
	}
	return nil
}

// ExternalDNS writes a DNSEndpoint object per tenant for external-dns's CRD source.
type ExternalDNS struct {
	client    kube.Client
	namespace string
}

// NewExternalDNS returns the provider that keeps DNSEndpoint objects in namespace.
func NewExternalDNS(client kube.Client, namespace string) *ExternalDNS {
	return &ExternalDNS{client: client, namespace: namespace}
}

// Ensure implements Provider.
func (e *ExternalDNS) Ensure(ctx context.Context, r Record) error {
	return e.client.Apply(ctx, DNSEndpoint(r, e.namespace))
}

// Remove implements Provider.
func (e *ExternalDNS) Remove(ctx context.Context, r Record) error {
	return e.client.Delete(ctx, kube.RefOf(DNSEndpoint(r, e.namespace)))
}

// DNSEndpoint is the external-dns object for r (externaldns.k8s.io/v1alpha1).
func DNSEndpoint(r Record, namespace string) *unstructured.Unstructured {
	endpoint := map[string]any{
		"dnsName":    r.Name,
		"recordType": r.Type,
		"targets":    []any{r.Target},
	}
	if r.TTL > 0 {
		endpoint["recordTTL"] = r.TTL
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "externaldns.k8s.io/v1alpha1",
		"kind":       "DNSEndpoint",
		"metadata": map[string]any{
			"name":      "tenant-" + r.Slug,
			"namespace": namespace,
			"labels": map[string]any{
				kube.LabelTenantID:   r.TenantID,
				kube.LabelTenantSlug: r.Slug,
				kube.LabelManagedBy:  kube.ManagedBy,
			},
		},
		"spec": map[string]any{"endpoints": []any{endpoint}},
	}}
}
