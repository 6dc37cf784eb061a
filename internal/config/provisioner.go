package config

import (
	"fmt"
	"net"
	"net/mail"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Provisioner configures tenant provisioning: the saga workers, the admin API's token check, and the
// systems each step touches. The provisioner component owns this file.
type Provisioner struct {
	// Workers is how many sagas this replica runs at once.
	Workers int `yaml:"workers"`
	// PollInterval is how often an idle worker looks for due sagas.
	PollInterval Duration `yaml:"poll_interval"`
	// Lease is how long a claimed saga stays with its replica without a heartbeat; a replica that dies
	// loses its sagas to the others after this long.
	Lease Duration `yaml:"lease"`
	// MaxAttempts is how often a failing step is tried before the saga compensates.
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff is the wait before the second attempt; it doubles per attempt up to MaxBackoff.
	Backoff    Duration `yaml:"backoff"`
	MaxBackoff Duration `yaml:"max_backoff"`

	Admin      ProvisionerAdmin `yaml:"admin"`
	Database   TenantDatabases  `yaml:"database"`
	Kubernetes Kubernetes       `yaml:"kubernetes"`
	DNS        DNS              `yaml:"dns"`
	Email      Email            `yaml:"email"`
}

// ProvisionerAdmin is who may call the admin API: a bearer JWT from Issuer (one of authz.issuers)
// carrying Scope.
type ProvisionerAdmin struct {
	Issuer string `yaml:"issuer"`
	Scope  string `yaml:"scope"`
}

// TenantDatabases says where tenant data lives, per tenancy model.
type TenantDatabases struct {
	// SharedURL is the shared database of pool and namespace tenants (default: database_url).
	SharedURL Secret `yaml:"shared_url"`
	// PoolSchema holds the pool tenants' tables, under row-level security.
	PoolSchema string `yaml:"pool_schema"`
	// ServerURL is an owner connection to the server bridge tenants get their own database on.
	ServerURL Secret `yaml:"server_url"`
	// SiloURLTemplate is a silo tenant's database URL; {slug} and {id} are replaced.
	SiloURLTemplate Secret `yaml:"silo_url_template"`
	// NamePrefix starts the name of every schema and database made for a tenant.
	NamePrefix string `yaml:"name_prefix"`
}

// Kubernetes configures the kubernetes step.
type Kubernetes struct {
	// Enabled is auto (when a kubeconfig or in-cluster config exists), true or false.
	Enabled string `yaml:"enabled"`
	// Kubeconfig is a kubeconfig path; empty: $KUBECONFIG, ~/.kube/config, then in-cluster.
	Kubeconfig   string `yaml:"kubeconfig"`
	FieldManager string `yaml:"field_manager"`
	// NamespacePrefix starts every tenant namespace's name.
	NamespacePrefix string `yaml:"namespace_prefix"`
	// Plans are the compute budgets per plan name.
	Plans map[string]KubernetesPlan `yaml:"plans"`
}

// Resources is a Kubernetes resource list such as {"requests.cpu": "2", "pods": "20"}.
type Resources map[string]string

// KubernetesPlan is one plan's compute budget.
type KubernetesPlan struct {
	// Quota caps the whole namespace.
	Quota Resources `yaml:"quota"`
	// PriorityClasses caps the pods of each priority class, so one class cannot starve another.
	PriorityClasses map[string]Resources `yaml:"priority_classes"`
	// Unclassified caps pods that name no priority class (a class-scoped quota does not see them).
	Unclassified Resources `yaml:"unclassified"`
	// DefaultRequest and DefaultLimit are what a container that states no resources gets.
	DefaultRequest Resources `yaml:"default_request"`
	DefaultLimit   Resources `yaml:"default_limit"`
}

// DNS configures the dns step.
type DNS struct {
	// Provider is record (kept in Postgres only), external-dns (a DNSEndpoint object) or none.
	Provider string `yaml:"provider"`
	// Target is what <slug>.<base_domain> points at: a host name (CNAME) or an IP address (A/AAAA).
	Target string `yaml:"target"`
	TTL    int64  `yaml:"ttl"`
	// Namespace holds the DNSEndpoint objects of the external-dns provider.
	Namespace string `yaml:"namespace"`
}

// Email configures the welcome email. An empty SMTPAddr turns the email step off.
type Email struct {
	SMTPAddr string `yaml:"smtp_addr"`
	From     string `yaml:"from"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	// StartTLS requires STARTTLS before authenticating (plain SMTP is allowed only without credentials).
	StartTLS bool `yaml:"starttls"`
	// InviteURL is the link in the email; {slug}, {domain} and {token} are replaced.
	InviteURL string `yaml:"invite_url"`
}

// Kubernetes step switches.
const (
	KubernetesAuto = "auto"
	KubernetesOn   = "true"
	KubernetesOff  = "false"
)

// DNS providers.
const (
	DNSRecord      = "record"
	DNSExternalDNS = "external-dns"
	DNSNone        = "none"
)

func defaultProvisioner() Provisioner {
	return Provisioner{
		Workers:      4,
		PollInterval: Duration(500e6),
		Lease:        Duration(30e9),
		MaxAttempts:  5,
		Backoff:      Duration(1e9),
		MaxBackoff:   Duration(60e9),
		Admin:        ProvisionerAdmin{Scope: "tenantgate:admin"},
		Database:     TenantDatabases{PoolSchema: "tenant_pool", NamePrefix: "tenant_"},
		Kubernetes: Kubernetes{
			Enabled:         KubernetesAuto,
			FieldManager:    "tenantgate",
			NamespacePrefix: "tenant-",
			Plans:           DefaultKubernetesPlans(),
		},
		DNS:   DNS{Provider: DNSRecord, Target: "gateway.tenants.localhost", TTL: 300, Namespace: "tenantgate"},
		Email: Email{From: "Tenantgate <no-reply@tenants.localhost>", InviteURL: "https://{slug}.{domain}/invite?token={token}"},
	}
}

// DefaultKubernetesPlans are the budgets of the default plans: each plan doubles the one before.
// Operator-critical pods and batch pods each get their own share, and pods naming no class a small one.
func DefaultKubernetesPlans() map[string]KubernetesPlan {
	plan := func(scale int) KubernetesPlan {
		cpu := func(milli int) string { return fmt.Sprintf("%dm", milli*scale) }
		mem := func(mi int) string { return fmt.Sprintf("%dMi", mi*scale) }
		pods := func(n int) string { return fmt.Sprint(n * scale) }
		return KubernetesPlan{
			Quota: Resources{"requests.cpu": cpu(2000), "limits.cpu": cpu(4000),
				"requests.memory": mem(4096), "limits.memory": mem(8192), "pods": pods(20),
				"persistentvolumeclaims": pods(5), "requests.storage": fmt.Sprintf("%dGi", 10*scale)},
			PriorityClasses: map[string]Resources{
				"tenant-critical": {"requests.cpu": cpu(1000), "requests.memory": mem(2048), "pods": pods(8)},
				"tenant-batch":    {"requests.cpu": cpu(500), "requests.memory": mem(1024), "pods": pods(8)},
			},
			Unclassified:   Resources{"requests.cpu": cpu(500), "requests.memory": mem(1024), "pods": pods(4)},
			DefaultRequest: Resources{"cpu": "100m", "memory": "128Mi"},
			DefaultLimit:   Resources{"cpu": "500m", "memory": "512Mi"},
		}
	}
	return map[string]KubernetesPlan{
		"free": plan(1), "starter": plan(2), "professional": plan(4), "enterprise": plan(8),
	}
}

var templateVar = regexp.MustCompile(`\{[a-z]+\}`)

func (p Provisioner) validate(key string, c *Config) error {
	switch {
	case p.Workers < 1 || p.Workers > 256:
		return keyErr(key+".workers", "must be 1 to 256")
	case p.PollInterval < Duration(10e6):
		return keyErr(key+".poll_interval", "must be at least 10ms")
	case p.Lease < Duration(100e6):
		return keyErr(key+".lease", "must be at least 100ms")
	case p.MaxAttempts < 1:
		return keyErr(key+".max_attempts", "must be at least 1")
	case p.Backoff <= 0:
		return keyErr(key+".backoff", "must be positive")
	case p.MaxBackoff < p.Backoff:
		return keyErr(key+".max_backoff", "must be at least backoff")
	}
	if p.Admin.Scope == "" {
		return keyErr(key+".admin.scope", "is required")
	}
	if p.Admin.Issuer != "" && !issuerConfigured(c.Authz, p.Admin.Issuer) {
		return keyErr(key+".admin.issuer", "must be one of authz.issuers (got %q)", p.Admin.Issuer)
	}
	if err := p.Database.validate(key + ".database"); err != nil {
		return err
	}
	if err := p.Kubernetes.validate(key+".kubernetes", c); err != nil {
		return err
	}
	if err := p.DNS.validate(key + ".dns"); err != nil {
		return err
	}
	return p.Email.validate(key + ".email")
}

func issuerConfigured(a Authz, name string) bool {
	for _, is := range a.Issuers {
		if is.Issuer == name {
			return true
		}
	}
	return false
}

func (d TenantDatabases) validate(key string) error {
	if err := checkURL(key+".shared_url", string(d.SharedURL), "postgres", "postgresql"); err != nil {
		return err
	}
	if err := checkURL(key+".server_url", string(d.ServerURL), "postgres", "postgresql"); err != nil {
		return err
	}
	if !isIdentifier(d.PoolSchema) {
		return keyErr(key+".pool_schema", "must be a lower-case SQL identifier (got %q)", d.PoolSchema)
	}
	if !isIdentifier(d.NamePrefix) || len(d.NamePrefix) > 30 {
		return keyErr(key+".name_prefix", "must be a lower-case SQL identifier of at most 30 characters")
	}
	if t := string(d.SiloURLTemplate); t != "" {
		for _, v := range templateVar.FindAllString(t, -1) {
			if v != "{slug}" && v != "{id}" {
				return keyErr(key+".silo_url_template", "knows only {slug} and {id} (got %s)", v)
			}
		}
		probe := strings.NewReplacer("{slug}", "acme", "{id}", "0").Replace(t)
		if err := checkURL(key+".silo_url_template", probe, "postgres", "postgresql"); err != nil {
			return err
		}
	}
	return nil
}

func isIdentifier(s string) bool {
	if s == "" || len(s) > 63 || !(s[0] >= 'a' && s[0] <= 'z' || s[0] == '_') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func (k Kubernetes) validate(key string, c *Config) error {
	switch k.Enabled {
	case KubernetesAuto, KubernetesOn, KubernetesOff:
	default:
		return keyErr(key+".enabled", "must be auto, true or false (got %q)", k.Enabled)
	}
	if k.FieldManager == "" {
		return keyErr(key+".field_manager", "is required")
	}
	if k.NamespacePrefix == "" || len(k.NamespacePrefix) > 20 || strings.Trim(k.NamespacePrefix, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return keyErr(key+".namespace_prefix", "must be 1 to 20 lower-case letters, digits and hyphens")
	}
	for _, name := range sortedKeys(k.Plans) {
		if err := k.Plans[name].validate(key + ".plans." + name); err != nil {
			return err
		}
	}
	if k.Enabled == KubernetesOn {
		for _, name := range sortedKeys(c.Plans) {
			if _, ok := k.Plans[name]; !ok {
				return keyErr(key+".plans."+name, "plan %q needs a compute budget when kubernetes is enabled", name)
			}
		}
	}
	return nil
}

func (p KubernetesPlan) validate(key string) error {
	if len(p.Quota) == 0 {
		return keyErr(key+".quota", "at least one resource is required")
	}
	if err := p.Quota.validate(key + ".quota"); err != nil {
		return err
	}
	for _, class := range sortedKeys(p.PriorityClasses) {
		if class == "" {
			return keyErr(key+".priority_classes", "class names must not be empty")
		}
		if err := p.PriorityClasses[class].validate(key + ".priority_classes." + class); err != nil {
			return err
		}
	}
	if len(p.PriorityClasses) > 0 && len(p.Unclassified) == 0 {
		return keyErr(key+".unclassified", "is required with priority_classes: pods naming no class would escape the class quotas")
	}
	for k, v := range map[string]Resources{"unclassified": p.Unclassified, "default_request": p.DefaultRequest, "default_limit": p.DefaultLimit} {
		if err := v.validate(key + "." + k); err != nil {
			return err
		}
	}
	return nil
}

func (r Resources) validate(key string) error {
	for _, name := range sortedKeys(r) {
		if _, err := resource.ParseQuantity(r[name]); err != nil {
			return keyErr(key+"."+name, "must be a quantity such as 500m, 2 or 1Gi (got %q)", r[name])
		}
	}
	return nil
}

func (d DNS) validate(key string) error {
	switch d.Provider {
	case DNSRecord, DNSExternalDNS, DNSNone:
	default:
		return keyErr(key+".provider", "must be record, external-dns or none (got %q)", d.Provider)
	}
	if d.Provider != DNSNone && (d.Target == "" || strings.ContainsAny(d.Target, "/ ")) {
		return keyErr(key+".target", "must be a host name or an IP address")
	}
	if d.TTL < 0 {
		return keyErr(key+".ttl", "must not be negative")
	}
	if d.Provider == DNSExternalDNS && d.Namespace == "" {
		return keyErr(key+".namespace", "is required for the external-dns provider")
	}
	return nil
}

func (e Email) validate(key string) error {
	if e.SMTPAddr == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(e.SMTPAddr); err != nil {
		return keyErr(key+".smtp_addr", "must be host:port (got %q)", e.SMTPAddr)
	}
	if _, err := mail.ParseAddress(e.From); err != nil {
		return keyErr(key+".from", "must be an email address (got %q)", e.From)
	}
	if e.Username != "" && !e.StartTLS {
		return keyErr(key+".starttls", "must be true when a username is set: credentials are never sent in clear")
	}
	if !strings.Contains(e.InviteURL, "{token}") {
		return keyErr(key+".invite_url", "must contain {token}")
	}
	return nil
}

// KubernetesPlanFor returns the compute budget of a plan.
func (k Kubernetes) KubernetesPlanFor(plan string) (KubernetesPlan, bool) {
	p, ok := k.Plans[plan]
	return p, ok
}
