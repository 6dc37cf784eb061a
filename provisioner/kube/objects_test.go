package kube_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/provisioner/kube"
)

var acme = kube.Tenant{ID: "5b0f3a4e-8f0c-4c1e-9d7a-2f5c3b1a9e10", Slug: "acme", Plan: "starter", Namespace: "tenant-acme"}

var acmeLabels = map[string]string{
	"tenantgate.io/tenant-id":      "5b0f3a4e-8f0c-4c1e-9d7a-2f5c3b1a9e10",
	"tenantgate.io/tenant-slug":    "acme",
	"tenantgate.io/plan":           "starter",
	"app.kubernetes.io/managed-by": "tenantgate",
}

func q(s string) resource.Quantity { return resource.MustParse(s) }

func meta(name, ns string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: acmeLabels}
}

func TestObjects_StarterPlanExactly(t *testing.T) {
	plan := config.DefaultKubernetesPlans()["starter"]
	quotas, err := kube.ResourceQuotas(acme, plan)
	if err != nil {
		t.Fatal(err)
	}
	classScope := func(class string) *corev1.ScopeSelector {
		return &corev1.ScopeSelector{MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
			ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn, Values: []string{class}}}}
	}
	rq := metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"}
	wantQuotas := []*corev1.ResourceQuota{
		{TypeMeta: rq, ObjectMeta: meta("tenant-total", "tenant-acme"), Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			"requests.cpu": q("4000m"), "limits.cpu": q("8000m"), "requests.memory": q("8192Mi"), "limits.memory": q("16384Mi"),
			"pods": q("40"), "persistentvolumeclaims": q("10"), "requests.storage": q("20Gi")}}},
		{TypeMeta: rq, ObjectMeta: meta("tenant-class-tenant-batch", "tenant-acme"), Spec: corev1.ResourceQuotaSpec{
			Hard:          corev1.ResourceList{"requests.cpu": q("1000m"), "requests.memory": q("2048Mi"), "pods": q("16")},
			ScopeSelector: classScope("tenant-batch")}},
		{TypeMeta: rq, ObjectMeta: meta("tenant-class-tenant-critical", "tenant-acme"), Spec: corev1.ResourceQuotaSpec{
			Hard:          corev1.ResourceList{"requests.cpu": q("2000m"), "requests.memory": q("4096Mi"), "pods": q("16")},
			ScopeSelector: classScope("tenant-critical")}},
		// Pods naming no priority class, or a class the plan does not know, escape the class quotas
		// unless a quota scoped to "none of the plan's classes" closes the gap.
		{TypeMeta: rq, ObjectMeta: meta("tenant-unclassified", "tenant-acme"), Spec: corev1.ResourceQuotaSpec{
			Hard: corev1.ResourceList{"requests.cpu": q("1000m"), "requests.memory": q("2048Mi"), "pods": q("8")},
			ScopeSelector: &corev1.ScopeSelector{MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
				ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpNotIn,
				Values: []string{"tenant-batch", "tenant-critical"}}}}}},
	}
	if diff := cmp.Diff(wantQuotas, quotas); diff != "" {
		t.Errorf("quotas (-want +got):\n%s", diff)
	}

	if diff := cmp.Diff(&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: "tenant-acme", Labels: acmeLabels}}, kube.Namespace(acme)); diff != "" {
		t.Errorf("namespace (-want +got):\n%s", diff)
	}

	lr, err := kube.LimitRange(acme, plan)
	if err != nil {
		t.Fatal(err)
	}
	wantLR := &corev1.LimitRange{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "LimitRange"}, ObjectMeta: meta("tenant-defaults", "tenant-acme"),
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			Default:        corev1.ResourceList{"cpu": q("500m"), "memory": q("512Mi")},
			DefaultRequest: corev1.ResourceList{"cpu": q("100m"), "memory": q("128Mi")}}}}}
	if diff := cmp.Diff(wantLR, lr); diff != "" {
		t.Errorf("limit range (-want +got):\n%s", diff)
	}

	udp, tcp, dns := corev1.ProtocolUDP, corev1.ProtocolTCP, intstr.FromInt32(53)
	wantNP := &networkingv1.NetworkPolicy{TypeMeta: metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: meta("tenant-isolation", "tenant-acme"),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{"Ingress", "Egress"},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}},
				{To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
			},
		}}
	if diff := cmp.Diff(wantNP, kube.NetworkPolicy(acme)); diff != "" {
		t.Errorf("network policy (-want +got):\n%s", diff)
	}
}

func TestObjects_QuotasScaleWithThePlan(t *testing.T) {
	plans := config.DefaultKubernetesPlans()
	for _, c := range []struct {
		plan string
		pods string
	}{{"free", "20"}, {"starter", "40"}, {"professional", "80"}, {"enterprise", "160"}} {
		quotas, err := kube.ResourceQuotas(kube.Tenant{ID: acme.ID, Slug: "acme", Plan: c.plan, Namespace: "tenant-acme"}, plans[c.plan])
		if err != nil {
			t.Fatal(err)
		}
		got := quotas[0].Spec.Hard[corev1.ResourcePods]
		if got.Cmp(q(c.pods)) != 0 || quotas[0].Labels["tenantgate.io/plan"] != c.plan {
			t.Errorf("%s: pods %s, want %s", c.plan, got.String(), c.pods)
		}
	}
}

func TestObjects_UnstructuredKeepsKindAndDropsServerFields(t *testing.T) {
	objs, err := kube.Objects(acme, config.DefaultKubernetesPlans()["free"])
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, o := range objs {
		u, err := kube.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, has := u.Object["status"]; has {
			t.Errorf("%s carries status", kube.RefOf(u))
		}
		if _, has := u.Object["metadata"].(map[string]any)["creationTimestamp"]; has {
			t.Errorf("%s carries creationTimestamp", kube.RefOf(u))
		}
		refs = append(refs, kube.RefOf(u).String())
	}
	want := []string{"Namespace tenant-acme", "ResourceQuota tenant-acme/tenant-total",
		"ResourceQuota tenant-acme/tenant-class-tenant-batch", "ResourceQuota tenant-acme/tenant-class-tenant-critical",
		"ResourceQuota tenant-acme/tenant-unclassified", "LimitRange tenant-acme/tenant-defaults", "NetworkPolicy tenant-acme/tenant-isolation"}
	if diff := cmp.Diff(want, refs); diff != "" {
		t.Errorf("apply order (-want +got):\n%s", diff)
	}
}
