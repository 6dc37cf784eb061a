package steps

import (
	"context"
	"errors"
	"fmt"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/provisioner/kube"
	"github.com/tenantgate/tenantgate/provisioner/saga"
)

// madeKubernetes is what the kubernetes step records.
type madeKubernetes struct {
	Namespace string   `json:"namespace"`
	Objects   []string `json:"objects"`
}

// kubernetesStep applies the tenant's namespace, quotas, limit range and network policy with
// server-side apply (the builders in package kube are pure; only the client talks to a cluster).
type kubernetesStep struct{ d *Deps }

func (s *kubernetesStep) Name() string { return Kubernetes }

// tenant is what the builders need, with the plan the registry holds when the step runs, not the
// spec's: the budget must be the one the rate limiter and authorization read. The registry's plan
// cannot change under the step: creations and deletions run while the tenant is provisioning or
// deleting, whose plan cannot change, and an update saga's first step stored its plan while the
// saga holds the tenant's one saga slot (see Provisioner.ChangePlan). A tenant the registry does not
// hold, as when the step runs on its own (the Kubernetes tests), takes the spec's plan.
func (s *kubernetesStep) tenant(ctx context.Context, spec saga.Spec) (kube.Tenant, error) {
	plan := spec.Plan
	t, err := s.d.Registry.Get(ctx, spec.TenantID)
	switch {
	case err == nil:
		plan = t.Plan
	case !errors.Is(err, registry.ErrNotFound):
		return kube.Tenant{}, fmt.Errorf("registry: %w", err)
	}
	return kube.Tenant{ID: spec.TenantID, Slug: spec.Slug, Plan: plan,
		Namespace: namespaceName(s.d.KubePrefix, spec.Slug, spec.TenantID)}, nil
}

func (s *kubernetesStep) Do(ctx context.Context, r *saga.Run) error {
	t, err := s.tenant(ctx, r.Spec)
	if err != nil {
		return err
	}
	plan, ok := s.d.KubePlans[t.Plan]
	if !ok {
		return fmt.Errorf("no compute budget for plan %q (provisioner.kubernetes.plans)", t.Plan)
	}
	objs, err := kube.Objects(t, plan)
	if err != nil {
		return err
	}
	made := madeKubernetes{Namespace: t.Namespace}
	for _, o := range objs {
		u, err := kube.ToUnstructured(o)
		if err != nil {
			return err
		}
		if err := s.d.Kube.Apply(ctx, u); err != nil {
			return err
		}
		made.Objects = append(made.Objects, kube.RefOf(u).String())
	}
	return r.Record(Kubernetes, made)
}

// Undo deletes each object, then the namespace (which would take them anyway, but a cluster's
// namespace deletion is slow and the objects should stop applying at once).
func (s *kubernetesStep) Undo(ctx context.Context, r *saga.Run) error {
	t, err := s.tenant(ctx, r.Spec)
	if err != nil {
		return err
	}
	objs, err := kube.Objects(t, s.d.KubePlans[t.Plan])
	if err != nil {
		return err
	}
	for i := len(objs) - 1; i >= 0; i-- {
		u, err := kube.ToUnstructured(objs[i])
		if err != nil {
			return err
		}
		if err := s.d.Kube.Delete(ctx, kube.RefOf(u)); err != nil {
			return err
		}
	}
	return nil
}
