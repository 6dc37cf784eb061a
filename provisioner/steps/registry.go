package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/saga"
)

// registryProvisioningStep opens a creation: the tenant exists in the registry in status
// provisioning. Its undo closes a compensated creation: the tenant is failed, with the reason.
type registryProvisioningStep struct{ d *Deps }

func (s *registryProvisioningStep) Name() string { return RegistryProvisioning }

func (s *registryProvisioningStep) Do(ctx context.Context, r *saga.Run) error {
	if err := ensureRegistered(ctx, s.d.Registry, r.Spec); err != nil {
		return err
	}
	_, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		switch t.Status {
		case tenant.Pending, tenant.Failed:
			t.Status, t.LastError = tenant.Provisioning, ""
			return true
		}
		return false
	})
	if err != nil {
		return err
	}
	t, err := s.d.Registry.Get(ctx, r.Spec.TenantID)
	if err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	if t.Status != tenant.Provisioning && t.Status != tenant.Active {
		return fmt.Errorf("tenant is %s, not provisioning", t.Status)
	}
	return nil
}

func (s *registryProvisioningStep) Undo(ctx context.Context, r *saga.Run) error {
	_, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Status != tenant.Pending && t.Status != tenant.Provisioning {
			return false
		}
		t.Status, t.LastError = tenant.Failed, r.LastError
		t.Resources = tenant.Resources{}
		return true
	})
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	return err
}

// ensureRegistered creates the tenant in status pending when the registry does not have it (the API
// stores the saga first, so a crash between the two leaves a saga whose tenant is still to be made).
func ensureRegistered(ctx context.Context, reg registry.Registry, spec saga.Spec) error {
	_, err := reg.Get(ctx, spec.TenantID)
	if err == nil {
		return nil
	}
	if !errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("registry: %w", err)
	}
	_, err = reg.Create(ctx, TenantOf(spec))
	if errors.Is(err, registry.ErrExists) {
		// Either a concurrent attempt made it (the next read finds it) or the slug is taken.
		if _, gerr := reg.Get(ctx, spec.TenantID); gerr == nil {
			return nil
		}
		return fmt.Errorf("registry: slug %q is taken", spec.Slug)
	}
	if err != nil {
		return fmt.Errorf("registry: create: %w", err)
	}
	return nil
}

// TenantOf is the registry entry of a new tenant, in status pending.
func TenantOf(spec saga.Spec) tenant.Tenant {
	return tenant.Tenant{
		ID: spec.TenantID, Slug: spec.Slug, Name: spec.Name, Plan: spec.Plan, Model: spec.Model,
		Status: tenant.Pending, Upstream: spec.Upstream,
	}
}

// registryActiveStep is the last compensable step of a creation: the tenant is active, with the
// resources the steps made, and the xDS server and sidecars learn it from the change feed.
type registryActiveStep struct{ d *Deps }

func (s *registryActiveStep) Name() string { return RegistryActive }

func (s *registryActiveStep) Do(ctx context.Context, r *saga.Run) error {
	res, err := resourcesOf(r)
	if err != nil {
		return err
	}
	t, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Status != tenant.Provisioning && t.Status != tenant.Active {
			return false
		}
		if t.Status == tenant.Active && t.Resources == res && t.LastError == "" {
			return false
		}
		t.Status, t.Resources, t.LastError = tenant.Active, res, ""
		return true
	})
	if err != nil {
		return err
	}
	if t.Status != tenant.Active {
		return fmt.Errorf("tenant is %s, cannot become active", t.Status)
	}
	return nil
}

func (s *registryActiveStep) Undo(ctx context.Context, r *saga.Run) error {
	_, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Status != tenant.Active {
			return false
		}
		t.Status = tenant.Provisioning
		return true
	})
	if errors.Is(err, registry.ErrNotFound) {
		return nil
	}
	return err
}

// resourcesOf gathers what the steps recorded into the registry's view of it.
func resourcesOf(r *saga.Run) (tenant.Resources, error) {
	var res tenant.Resources
	var db madeDatabase
	if _, err := r.Made(Database, &db); err != nil {
		return res, err
	}
	res.Database, res.Schema = db.Database, db.Schema
	var k madeKubernetes
	if _, err := r.Made(Kubernetes, &k); err != nil {
		return res, err
	}
	res.Namespace = k.Namespace
	var d madeDNS
	if _, err := r.Made(DNS, &d); err != nil {
		return res, err
	}
	res.Domain = d.Name
	return res, nil
}

// registryDeletingStep opens a deletion: the tenant is deleting, which authorization and routing
// refuse at once (the API sets it too, before the saga runs).
type registryDeletingStep struct{ d *Deps }

func (s *registryDeletingStep) Name() string { return RegistryDeleting }

func (s *registryDeletingStep) Do(ctx context.Context, r *saga.Run) error {
	t, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Status == tenant.Deleting || t.Status == tenant.Deleted {
			return false
		}
		t.Status, t.LastError = tenant.Deleting, ""
		return true
	})
	if err != nil {
		return err
	}
	if t.Status != tenant.Deleting && t.Status != tenant.Deleted {
		return fmt.Errorf("tenant is %s, cannot be deleted", t.Status)
	}
	return nil
}

func (s *registryDeletingStep) Undo(context.Context, *saga.Run) error {
	return errors.New("a deletion cannot be undone")
}

// registryDeletedStep closes a deletion: the tenant stays as a tombstone, so that its id and slug
// are never used again.
type registryDeletedStep struct{ d *Deps }

func (s *registryDeletedStep) Name() string { return RegistryDeleted }

func (s *registryDeletedStep) Do(ctx context.Context, r *saga.Run) error {
	_, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Status != tenant.Deleting {
			return false
		}
		t.Status, t.Resources, t.LastError = tenant.Deleted, tenant.Resources{}, ""
		return true
	})
	return err
}

func (s *registryDeletedStep) Undo(context.Context, *saga.Run) error {
	return errors.New("a deletion cannot be undone")
}

// registryPlanStep opens a plan change: the registry holds the saga's plan. The API stores it too,
// but only when nothing wrote the tenant since it started the saga; this step stores it when the API
// did not (it died, or a concurrent write won), and the kubernetes step after it applies the plan the
// registry holds. A tenant's saga runs alone, so no other change of plan comes in between.
type registryPlanStep struct{ d *Deps }

func (s *registryPlanStep) Name() string { return RegistryPlan }

func (s *registryPlanStep) Do(ctx context.Context, r *saga.Run) error {
	t, err := updateTenant(ctx, s.d.Registry, r.Spec.TenantID, func(t *tenant.Tenant) bool {
		if t.Plan == r.Spec.Plan || (t.Status != tenant.Active && t.Status != tenant.Suspended) {
			return false
		}
		t.Plan = r.Spec.Plan
		return true
	})
	if err != nil {
		return err
	}
	if t.Plan != r.Spec.Plan {
		return fmt.Errorf("tenant is %s; its plan cannot change", t.Status)
	}
	return nil
}

// Undo is never called: a plan change has nothing before its pivot (a later change replaces it).
func (s *registryPlanStep) Undo(context.Context, *saga.Run) error {
	return errors.New("a plan change cannot be undone")
}

// purgeStep removes the tenant's rate-limit counters.
type purgeStep struct{ d *Deps }

func (s *purgeStep) Name() string { return PurgeCounters }

func (s *purgeStep) Do(ctx context.Context, r *saga.Run) error {
	if err := s.d.Purger.PurgeTenant(ctx, r.Spec.TenantID); err != nil {
		return fmt.Errorf("purge rate-limit counters: %w", err)
	}
	return nil
}

func (s *purgeStep) Undo(context.Context, *saga.Run) error {
	return errors.New("a purge cannot be undone")
}
