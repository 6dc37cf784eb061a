package steps

import (
	"context"
	"fmt"

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

func (s *kubernetesStep) tenant(spec saga.Spec) kube.Tenant {
	return kube.Tenant{ID: spec.TenantID, Slug: spec.Slug, Plan: spec.Plan,
		Namespace: namespaceName(s.d.KubePrefix, spec.Slug, spec.TenantID)}
}

func (s *kubernetesStep) Do(ctx context.Context, r *saga.Run) error {
	plan, ok := s.d.KubePlans[r.Spec.Plan]
	if !ok {
		return fmt.Errorf("no compute budget for plan %q (provisioner.kubernetes.plans)", r.Spec.Plan)
	}
	t := s.tenant(r.Spec)
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
	t := s.tenant(r.Spec)
	plan := s.d.KubePlans[r.Spec.Plan]
	objs, err := kube.Objects(t, plan)
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
