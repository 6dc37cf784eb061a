package dns_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/provisioner/dns"
	"github.com/tenantgate/tenantgate/provisioner/kube"
	"github.com/tenantgate/tenantgate/provisioner/kube/kubetest"
)

func TestNewRecord_TypeFollowsTheTarget(t *testing.T) {
	for target, want := range map[string]string{"gateway.example.com": "CNAME", "203.0.113.7": "A", "2001:db8::1": "AAAA"} {
		if got := dns.NewRecord("id", "acme", "tenants.example.com", target, 60); got.Type != want || got.Name != "acme.tenants.example.com" {
			t.Errorf("%s: %+v, want type %s", target, got, want)
		}
	}
}

func TestExternalDNS_WritesAndRemovesTheDNSEndpoint(t *testing.T) {
	rec := kubetest.New()
	p := dns.NewExternalDNS(rec, "tenantgate")
	r := dns.NewRecord("5b0f3a4e-8f0c-4c1e-9d7a-2f5c3b1a9e10", "acme", "tenants.example.com", "gateway.example.com", 300)
	ctx := context.Background()
	if err := p.Ensure(ctx, r); err != nil {
		t.Fatal(err)
	}
	ref := kube.Ref{APIVersion: "externaldns.k8s.io/v1alpha1", Kind: "DNSEndpoint", Namespace: "tenantgate", Name: "tenant-acme"}
	got := rec.Get(ref)
	if got == nil {
		t.Fatalf("no DNSEndpoint; have %v", rec.Refs())
	}
	want := map[string]any{"endpoints": []any{map[string]any{
		"dnsName": "acme.tenants.example.com", "recordType": "CNAME", "targets": []any{"gateway.example.com"}, "recordTTL": int64(300),
	}}}
	if diff := cmp.Diff(want, got.Object["spec"]); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
	if got.GetLabels()[kube.LabelTenantID] != r.TenantID {
		t.Errorf("labels %v", got.GetLabels())
	}
	if err := p.Remove(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(ctx, r); err != nil {
		t.Fatalf("second remove: %v", err)
	}
	if len(rec.Refs()) != 0 {
		t.Errorf("left: %v", rec.Refs())
	}
}
