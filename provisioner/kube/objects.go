package kube

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/tenantgate/tenantgate/internal/config"
)

// Labels every object made for a tenant carries.
const (
	LabelTenantID   = "tenantgate.io/tenant-id"
	LabelTenantSlug = "tenantgate.io/tenant-slug"
	LabelPlan       = "tenantgate.io/plan"
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedBy       = "tenantgate"
)

// Names of the objects inside a tenant namespace.
const (
	QuotaTotal        = "tenant-total"
	QuotaUnclassified = "tenant-unclassified"
	QuotaClassPrefix  = "tenant-class-"
	LimitRangeName    = "tenant-defaults"
	NetworkPolicyName = "tenant-isolation"
)

// Tenant is what the builders need to know about a tenant.
type Tenant struct {
	ID        string
	Slug      string
	Plan      string
	Namespace string
}

// Labels returns the labels of every object of t.
func Labels(t Tenant) map[string]string {
	return map[string]string{LabelTenantID: t.ID, LabelTenantSlug: t.Slug, LabelPlan: t.Plan, LabelManagedBy: ManagedBy}
}

// Namespace is the tenant's namespace.
func Namespace(t Tenant) *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: t.Namespace, Labels: Labels(t)},
	}
}

// ResourceQuotas are the namespace's quotas: one over the whole namespace, one per priority class of
// the plan (so one class, such as batch, cannot use up what another, such as operator-critical pods,
// needs), and one for pods naming no priority class, which the class-scoped quotas do not see.
func ResourceQuotas(t Tenant, p config.KubernetesPlan) ([]*corev1.ResourceQuota, error) {
	total, err := resourceList(p.Quota)
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	out := []*corev1.ResourceQuota{quota(t, QuotaTotal, total, nil)}
	classes := make([]string, 0, len(p.PriorityClasses))
	for c := range p.PriorityClasses {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		hard, err := resourceList(p.PriorityClasses[c])
		if err != nil {
			return nil, fmt.Errorf("priority class %s: %w", c, err)
		}
		out = append(out, quota(t, QuotaClassPrefix+c, hard, &corev1.ScopeSelector{
			MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
				ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn, Values: []string{c},
			}},
		}))
	}
	if len(p.Unclassified) > 0 {
		hard, err := resourceList(p.Unclassified)
		if err != nil {
			return nil, fmt.Errorf("unclassified: %w", err)
		}
		// NotIn the plan's classes covers pods naming no class and pods naming any other class alike
		// (DoesNotExist would let a pod of another class pass every quota but the total).
		scope := corev1.ScopedResourceSelectorRequirement{ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpDoesNotExist}
		if len(classes) > 0 {
			scope = corev1.ScopedResourceSelectorRequirement{ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpNotIn, Values: classes}
		}
		out = append(out, quota(t, QuotaUnclassified, hard, &corev1.ScopeSelector{
			MatchExpressions: []corev1.ScopedResourceSelectorRequirement{scope},
		}))
	}
	return out, nil
}

func quota(t Tenant, name string, hard corev1.ResourceList, scope *corev1.ScopeSelector) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: t.Namespace, Labels: Labels(t)},
		Spec:       corev1.ResourceQuotaSpec{Hard: hard, ScopeSelector: scope},
	}
}

// LimitRange gives containers that state no resources the plan's default requests and limits.
func LimitRange(t Tenant, p config.KubernetesPlan) (*corev1.LimitRange, error) {
	req, err := resourceList(p.DefaultRequest)
	if err != nil {
		return nil, fmt.Errorf("default_request: %w", err)
	}
	lim, err := resourceList(p.DefaultLimit)
	if err != nil {
		return nil, fmt.Errorf("default_limit: %w", err)
	}
	return &corev1.LimitRange{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "LimitRange"},
		ObjectMeta: metav1.ObjectMeta{Name: LimitRangeName, Namespace: t.Namespace, Labels: Labels(t)},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, Default: lim, DefaultRequest: req,
		}}},
	}, nil
}

// NetworkPolicy lets the namespace's pods talk only to each other, plus DNS to the cluster's
// resolver in kube-system.
func NetworkPolicy(t Tenant) *networkingv1.NetworkPolicy {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	sameNamespace := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: NetworkPolicyName, Namespace: t.Namespace, Labels: Labels(t)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: sameNamespace}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: sameNamespace},
				{
					To: []networkingv1.NetworkPolicyPeer{{
						NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
						PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
					}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}},
				},
			},
		},
	}
}

// Objects are all of a tenant's objects in the order they are applied (the namespace first).
func Objects(t Tenant, p config.KubernetesPlan) ([]runtime.Object, error) {
	quotas, err := ResourceQuotas(t, p)
	if err != nil {
		return nil, err
	}
	lr, err := LimitRange(t, p)
	if err != nil {
		return nil, err
	}
	out := []runtime.Object{Namespace(t)}
	for _, q := range quotas {
		out = append(out, q)
	}
	return append(out, lr, NetworkPolicy(t)), nil
}

// ToUnstructured converts a typed object for the dynamic client.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

func resourceList(r config.Resources) (corev1.ResourceList, error) {
	if len(r) == 0 {
		return nil, nil
	}
	out := make(corev1.ResourceList, len(r))
	for name, v := range r {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[corev1.ResourceName(name)] = q
	}
	return out, nil
}
