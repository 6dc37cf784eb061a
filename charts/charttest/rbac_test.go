package charttest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/kubetest"
	"github.com/tenantgate/tenantgate/provisioner/dns"
	"github.com/tenantgate/tenantgate/provisioner/kube"
)

// The chart's RBAC is enough for the provisioner's Kubernetes and DNS steps, run as the chart's
// ServiceAccount, and no more: it reads no Secrets or Pods and cannot grant itself anything.
func TestRBAC_ProvisionerCanDoItsStepsAndNothingElse(t *testing.T) {
	cp := kubetest.Start(t)
	admin, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, admin)
	ns := cp.Namespace(t, "chart-rbac")
	rel := "rb-" + ns[len(ns)-8:]
	objs := render(t, rel, ns, "--set", required, "--set", "controlPlane.dnsEndpoints.enabled=true")
	mapper := mapperFor(t, cp)
	var sa string
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			apply(t, admin, mapper, o, false)
		}
		if o.GetKind() == "ServiceAccount" && o.GetLabels()["app.kubernetes.io/component"] == "controlplane" {
			sa = o.GetName()
		}
	}
	t.Cleanup(func() {
		for _, o := range objs {
			if o.GetKind() == "ClusterRole" || o.GetKind() == "ClusterRoleBinding" {
				gvr := rbacv1.SchemeGroupVersion.WithResource(map[string]string{"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings"}[o.GetKind()])
				_ = admin.Resource(gvr).Delete(context.Background(), o.GetName(), metav1.DeleteOptions{})
			}
		}
	})
	if sa == "" {
		t.Fatal("the chart rendered no control plane ServiceAccount")
	}
	as := rest.CopyConfig(cp.Config)
	as.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa}
	dyn, err := dynamic.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// The Kubernetes step's objects, applied and deleted the way the step does it.
	client := kube.NewDynamic(dyn, "tenantgate")
	tenant := kube.Tenant{ID: "9b0d9a52-5b1c-4d0e-8a43-0d8c2f3b7e11", Slug: "rbac-" + ns[len(ns)-8:], Plan: "free"}
	tenant.Namespace = "tenant-" + tenant.Slug
	built, err := kube.Objects(tenant, config.DefaultKubernetesPlans()["free"])
	if err != nil {
		t.Fatal(err)
	}
	var refs []kube.Ref
	for _, o := range built {
		u, err := kube.ToUnstructured(o)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Apply(ctx, u); err != nil {
			t.Fatalf("as %s: %v", sa, err)
		}
		refs = append(refs, kube.RefOf(u))
	}
	for i := len(refs) - 1; i >= 0; i-- {
		if err := client.Delete(ctx, refs[i]); err != nil {
			t.Fatalf("as %s: %v", sa, err)
		}
	}
	// The DNS step's DNSEndpoint, in the release namespace.
	ext := dns.NewExternalDNS(client, ns)
	rec := dns.NewRecord(tenant.ID, tenant.Slug, "tenants.test", "gateway.tenants.test", 300)
	if err := ext.Ensure(ctx, rec); err != nil {
		t.Fatalf("as %s: DNSEndpoint: %v", sa, err)
	}
	if err := ext.Remove(ctx, rec); err != nil {
		t.Fatalf("as %s: remove DNSEndpoint: %v", sa, err)
	}

	// And nothing else.
	typed, err := kubernetes.NewForConfig(as)
	if err != nil {
		t.Fatal(err)
	}
	forbidden := map[string]error{}
	_, forbidden["list secrets"] = typed.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	_, forbidden["list pods"] = typed.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	_, forbidden["create a ConfigMap"] = typed.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
	_, forbidden["create a ClusterRoleBinding"] = typed.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "escalate-" + rel},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}},
	}, metav1.CreateOptions{})
	forbidden["delete a PriorityClass"] = typed.SchedulingV1().PriorityClasses().Delete(ctx, "tenant-batch", metav1.DeleteOptions{})
	for what, err := range forbidden {
		if !apierrors.IsForbidden(err) {
			t.Errorf("as %s, %s: got %v, want Forbidden", sa, what, err)
		}
	}
}
