package config

import (
	"errors"
	"strings"
	"testing"
)

func TestProvisioner_DefaultsAndAFullSection(t *testing.T) {
	cfg, err := Load(writeConfig(t, `
authz:
  issuers:
    - issuer: https://admin.example.com
      audiences: [tenantgate-admin]
      hmac_secret: an-hmac-secret-of-at-least-thirty-two-bytes
      algorithms: [HS256]
provisioner:
  workers: 8
  lease: 10s
  admin: {issuer: https://admin.example.com, scope: ops:admin}
  database:
    server_url: postgres://owner@db.example.com:5432/postgres
    silo_url_template: postgres://owner@{slug}.silo.example.com:5432/app
    name_prefix: t_
  kubernetes:
    enabled: "false"
  dns: {provider: external-dns, target: 203.0.113.7, namespace: dns}
  email: {smtp_addr: "mail.example.com:587", from: "Ops <ops@example.com>", username: ops, password: s3cret, starttls: true}
`), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Provisioner
	if p.Workers != 8 || p.Lease.D().Seconds() != 10 || p.MaxAttempts != 5 || p.Admin.Scope != "ops:admin" ||
		p.Database.PoolSchema != "tenant_pool" || p.Database.NamePrefix != "t_" || p.Kubernetes.Enabled != KubernetesOff ||
		p.DNS.Provider != DNSExternalDNS || p.DNS.TTL != 300 || p.Email.Password.Value() != "s3cret" {
		t.Errorf("provisioner section: %+v", p)
	}
	if len(p.Kubernetes.Plans) != 4 || p.Kubernetes.Plans["enterprise"].Quota["pods"] != "160" {
		t.Errorf("default compute budgets: %+v", p.Kubernetes.Plans["enterprise"])
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") {
		t.Error("the SMTP password is printed")
	}
}

func TestProvisioner_MistakesNameTheirKey(t *testing.T) {
	tests := []struct {
		name, body, key, reason string
	}{
		{"no workers", "provisioner: {workers: 0}\n", "provisioner.workers", "1 to 256"},
		{"short lease", "provisioner: {lease: 10ms}\n", "provisioner.lease", "at least 100ms"},
		{"backoff above max", "provisioner: {backoff: 2m, max_backoff: 1m}\n", "provisioner.max_backoff", "at least backoff"},
		{"admin issuer not configured", "provisioner: {admin: {issuer: https://nowhere.example}}\n", "provisioner.admin.issuer", "authz.issuers"},
		{"bad server url", "provisioner: {database: {server_url: mysql://x/y}}\n", "provisioner.database.server_url", "postgres"},
		{"bad silo template", "provisioner: {database: {silo_url_template: 'postgres://{tenant}.db/app'}}\n", "provisioner.database.silo_url_template", "{slug} and {id}"},
		{"bad prefix", "provisioner: {database: {name_prefix: Tenant-}}\n", "provisioner.database.name_prefix", "identifier"},
		{"bad kubernetes switch", "provisioner: {kubernetes: {enabled: maybe}}\n", "provisioner.kubernetes.enabled", "auto, true or false"},
		{"bad quantity", "provisioner: {kubernetes: {plans: {free: {quota: {pods: lots}}}}}\n", "provisioner.kubernetes.plans.free.quota.pods", "quantity"},
		{"plan without budget when on", "provisioner: {kubernetes: {enabled: 'true', plans: {}}}\nplans: {gold: {windows: [{limit: 1, period: 1h}]}}\n", "provisioner.kubernetes.plans.gold", "compute budget"},
		{"bad dns provider", "provisioner: {dns: {provider: route53}}\n", "provisioner.dns.provider", "record, external-dns or none"},
		{"credentials in clear", "provisioner: {email: {smtp_addr: 'mail:25', username: u}}\n", "provisioner.email.starttls", "never sent in clear"},
		{"invite url without token", "provisioner: {email: {smtp_addr: 'mail:25', invite_url: 'https://x/'}}\n", "provisioner.email.invite_url", "{token}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectKeyError(t, tt.body, tt.key, tt.reason) })
	}
}

func TestProvisioner_ClassQuotasNeedTheUnclassifiedQuota(t *testing.T) {
	p := DefaultKubernetesPlans()["free"]
	p.Unclassified = nil
	err := p.validate("provisioner.kubernetes.plans.free")
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "provisioner.kubernetes.plans.free.unclassified" {
		t.Fatalf("got %v", err)
	}
}
