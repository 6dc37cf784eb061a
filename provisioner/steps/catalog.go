package steps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/dns"
	"github.com/tenantgate/tenantgate/provisioner/kube"
	"github.com/tenantgate/tenantgate/provisioner/saga"
)

// Step names.
const (
	RegistryProvisioning = "registry-provisioning"
	Database             = "database"
	Migrations           = "migrations"
	Kubernetes           = "kubernetes"
	DNS                  = "dns"
	AdminUser            = "admin-user"
	RegistryActive       = "registry-active"
	WelcomeEmail         = "welcome-email"

	RegistryDeleting = "registry-deleting"
	PurgeCounters    = "purge-counters"
	RemoveAdminUser  = "remove-admin-user"
	RemoveDNS        = "remove-dns"
	RemoveKubernetes = "remove-kubernetes"
	RemoveDatabase   = "remove-database"
	RegistryDeleted  = "registry-deleted"

	RegistryPlan = "registry-plan"
)

// CounterPurger removes a tenant's rate-limit counters (ratelimit.Limiter is one).
type CounterPurger interface {
	PurgeTenant(ctx context.Context, tenantID string) error
}

// Deps are the systems the steps touch. Kube, DNS, Mailer and Purger are optional: a nil one leaves
// its step out of every saga.
type Deps struct {
	Registry registry.Registry
	// State holds the provisioner's schema (saga.Schema): email intents, DNS records.
	State *pgxpool.Pool
	// Shared is the shared tenant database of pool and namespace tenants.
	Shared    *pgxpool.Pool
	Databases config.TenantDatabases
	// ServerURL is bridge tenants' database server (an owner connection), parsed; nil: no bridge.
	BaseDomain string

	Kube       kube.Client
	KubePlans  map[string]config.KubernetesPlan
	KubePrefix string
	DNS        dns.Provider
	DNSConfig  config.DNS
	Mailer     *Mailer
	Purger     CounterPurger
	Log        *slog.Logger
}

// Catalog is the saga.Catalog of tenant provisioning.
type Catalog struct {
	d     Deps
	steps map[string]saga.Step
}

var _ saga.Catalog = (*Catalog)(nil)

// NewCatalog builds the steps over d.
func NewCatalog(d Deps) (*Catalog, error) {
	if d.Registry == nil || d.State == nil {
		return nil, errors.New("steps: the registry and the state database are required")
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Catalog{d: d, steps: map[string]saga.Step{}}
	db := &databaseStep{d: &c.d}
	admin := &adminUserStep{d: &c.d}
	add := func(s saga.Step) { c.steps[s.Name()] = s }
	add(&registryProvisioningStep{d: &c.d})
	add(db)
	add(&migrationsStep{d: &c.d})
	add(admin)
	add(&registryActiveStep{d: &c.d})
	add(&registryDeletingStep{d: &c.d})
	add(&registryDeletedStep{d: &c.d})
	add(&registryPlanStep{d: &c.d})
	add(reverse(RemoveAdminUser, admin))
	add(reverse(RemoveDatabase, db))
	if d.Kube != nil {
		k := &kubernetesStep{d: &c.d}
		add(k)
		add(reverse(RemoveKubernetes, k))
	}
	if d.DNS != nil {
		s := &dnsStep{d: &c.d}
		add(s)
		add(reverse(RemoveDNS, s))
	}
	if d.Mailer != nil {
		add(&emailStep{d: &c.d})
	}
	if d.Purger != nil {
		add(&purgeStep{d: &c.d})
	}
	return c, nil
}

// Step implements saga.Catalog.
func (c *Catalog) Step(name string) (saga.Step, bool) {
	s, ok := c.steps[name]
	return s, ok
}

func (c *Catalog) has(name string) bool { _, ok := c.steps[name]; return ok }

// Plan implements saga.Catalog.
func (c *Catalog) Plan(k saga.Kind, spec saga.Spec) (saga.Plan, error) {
	if err := c.Supports(spec.Model); err != nil {
		return saga.Plan{}, err
	}
	var names []string
	pick := func(cands ...string) {
		for _, n := range cands {
			if c.has(n) {
				names = append(names, n)
			}
		}
	}
	switch k {
	case saga.Create:
		pick(RegistryProvisioning, Database, Migrations, Kubernetes, DNS, AdminUser, RegistryActive)
		pivot := len(names)
		pick(WelcomeEmail)
		return saga.Plan{Steps: names, Pivot: pivot}, nil
	case saga.Delete:
		pick(RegistryDeleting, PurgeCounters, RemoveAdminUser, RemoveDNS, RemoveKubernetes, RemoveDatabase, RegistryDeleted)
		return saga.Plan{Steps: names}, nil
	case saga.Update:
		// The saga stores its plan before it applies the budget, so that it finishes a change its
		// API request did not (see Provisioner.ChangePlan). Without Kubernetes a plan change is a
		// registry write only, with no saga.
		if c.has(Kubernetes) {
			pick(RegistryPlan, Kubernetes)
		}
		return saga.Plan{Steps: names}, nil
	}
	return saga.Plan{}, fmt.Errorf("steps: unknown saga kind %q", k)
}

// HasUpdateSteps reports whether a plan change has anything to apply outside the registry.
func (c *Catalog) HasUpdateSteps() bool { return c.has(Kubernetes) }

// ErrModelUnavailable is returned for a tenancy model this provisioner has no database for.
var ErrModelUnavailable = errors.New("tenancy model not configured")

// Supports returns nil when tenants of model m can be provisioned here.
func (c *Catalog) Supports(m tenant.Model) error {
	switch m {
	case tenant.Pool, tenant.Namespace:
		if c.d.Shared == nil {
			return fmt.Errorf("%w: %s needs provisioner.database.shared_url", ErrModelUnavailable, m)
		}
	case tenant.Bridge:
		if c.d.Databases.ServerURL == "" {
			return fmt.Errorf("%w: bridge needs provisioner.database.server_url", ErrModelUnavailable)
		}
	case tenant.Silo:
		if c.d.Databases.SiloURLTemplate == "" {
			return fmt.Errorf("%w: silo needs provisioner.database.silo_url_template", ErrModelUnavailable)
		}
	default:
		return fmt.Errorf("%w: unknown model %q", ErrModelUnavailable, m)
	}
	return nil
}

// GaveUp implements saga.Catalog: a deletion that gives up leaves the tenant failed (retry resumes
// it); a creation that gives up after its pivot (the welcome email) leaves the tenant active, with
// the reason in its last error. A tenant already deleted (the last step did its work, then failed)
// stays an untouched tombstone: it cannot change, and nothing of it is left to remove.
func (c *Catalog) GaveUp(ctx context.Context, r *saga.Run, step string, cause error) error {
	msg := fmt.Sprintf("%s %s: %v", r.Kind, step, cause)
	_, err := updateTenant(ctx, c.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Status == tenant.Deleted {
			return false
		}
		if r.Kind == saga.Delete && t.Status == tenant.Deleting {
			t.Status = tenant.Failed
		}
		t.LastError = msg
		return true
	})
	return err
}

// reversed is a creation step run backwards, for the deletion saga: its Do is the step's Undo.
type reversed struct {
	name string
	s    saga.Step
}

func reverse(name string, s saga.Step) saga.Step { return &reversed{name: name, s: s} }

func (r *reversed) Name() string                                { return r.name }
func (r *reversed) Do(ctx context.Context, run *saga.Run) error { return r.s.Undo(ctx, run) }

// Undo is never called: deletion sagas have nothing before their pivot.
func (r *reversed) Undo(context.Context, *saga.Run) error {
	return errors.New("a deletion step cannot be undone")
}

// updateTenant applies fn to the stored tenant and writes it back, re-reading on a concurrent change.
// fn returns false when nothing needs writing.
func updateTenant(ctx context.Context, reg registry.Registry, id string, fn func(t *tenant.Tenant) bool) (tenant.Tenant, error) {
	for range 20 {
		t, err := reg.Get(ctx, id)
		if err != nil {
			return tenant.Tenant{}, fmt.Errorf("registry: %w", err)
		}
		if !fn(&t) {
			return t, nil
		}
		t, err = reg.Update(ctx, t)
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		if err != nil {
			return tenant.Tenant{}, fmt.Errorf("registry: %w", err)
		}
		return t, nil
	}
	return tenant.Tenant{}, fmt.Errorf("registry: tenant %s: %w", id, registry.ErrConflict)
}
