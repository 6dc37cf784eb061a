package charttest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/tenantgate/tenantgate/internal/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// Minimal CRDs of the Prometheus Operator kinds the chart renders and of external-dns's DNSEndpoint the
// provisioner writes, so the API server can take them: their schemas keep unknown fields, which is what
// a dry run needs to prove the objects are accepted as those kinds in the release namespace.
// A *.k8s.io group needs the API-review annotation external-dns's own CRD carries.
var crds = []struct{ group, version, plural, kind, approval string }{
	{"monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor", ""},
	{"monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", ""},
	{"externaldns.k8s.io", "v1alpha1", "dnsendpoints", "DNSEndpoint", "https://github.com/kubernetes-sigs/external-dns/pull/2007"},
}

func installCRDs(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		crd := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
			"metadata": map[string]any{"name": c.plural + "." + c.group},
			"spec": map[string]any{
				"group": c.group, "scope": "Namespaced",
				"names": map[string]any{"plural": c.plural, "singular": strings.ToLower(c.kind), "kind": c.kind, "listKind": c.kind + "List"},
				"versions": []any{map[string]any{
					"name": c.version, "served": true, "storage": true,
					"schema": map[string]any{"openAPIV3Schema": map[string]any{
						"type": "object", "x-kubernetes-preserve-unknown-fields": true,
					}},
				}},
			},
		}}
		if c.approval != "" {
			crd.SetAnnotations(map[string]string{"api-approved.kubernetes.io": c.approval})
		}
		_, err := dyn.Resource(gvr).Apply(context.Background(), crd.GetName(), crd, metav1.ApplyOptions{FieldManager: "charttest", Force: true})
		if err != nil {
			t.Fatalf("install CRD %s: %v", crd.GetName(), err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range crds {
		for {
			crd, err := dyn.Resource(gvr).Get(ctx, c.plural+"."+c.group, metav1.GetOptions{})
			if err == nil && crdEstablished(crd) {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("CRD %s not established: %v", c.plural, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func crdEstablished(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func mapperFor(t *testing.T, cp *kubetest.ControlPlane) meta.RESTMapper {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	return restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
}

// The API server validates every rendered object as it would on install (schema, defaults, admission),
// without keeping it: Helm's own --dry-run=server does not validate objects.
func TestDryRun_EveryRenderedObjectIsAccepted(t *testing.T) {
	cp := kubetest.Start(t)
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, dyn)
	mapper := mapperFor(t, cp)
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			ns := cp.Namespace(t, "chart-dryrun")
			objs := render(t, release, ns, vs.args()...)
			// Pods are admitted only with an existing ServiceAccount, and a dry run keeps nothing, so
			// the chart's ServiceAccounts are created for real first.
			for _, o := range kinds(objs, "ServiceAccount") {
				apply(t, dyn, mapper, o, false)
			}
			for _, o := range objs {
				apply(t, dyn, mapper, o, true)
			}
		})
	}
	// The same path refuses what an API server refuses: a Deployment whose selector does not match
	// its pods.
	t.Run("an invalid object is refused", func(t *testing.T) {
		ns := cp.Namespace(t, "chart-dryrun")
		d := find(render(t, release, ns, "--set", required), "Deployment", fullname+"-controlplane").DeepCopy()
		if err := unstructured.SetNestedStringMap(d.Object, map[string]string{"app": "other"}, "spec", "selector", "matchLabels"); err != nil {
			t.Fatal(err)
		}
		m, err := mapper.RESTMapping(d.GroupVersionKind().GroupKind(), d.GroupVersionKind().Version)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dyn.Resource(m.Resource).Namespace(ns).Apply(context.Background(), d.GetName(), d,
			metav1.ApplyOptions{FieldManager: "charttest", Force: true, DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsInvalid(err) {
			t.Fatalf("dry run of a Deployment whose selector misses its pods: %v, want Invalid", err)
		}
	})
}

func apply(t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, o *unstructured.Unstructured, dryRun bool) {
	t.Helper()
	gvk := o.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		t.Errorf("%s %s: the API server does not know the kind: %v", gvk, o.GetName(), err)
		return
	}
	var res dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		res = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: "charttest", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := res.Apply(context.Background(), o.GetName(), o, opts); err != nil {
		t.Errorf("%s %s rejected: %v", gvk.Kind, o.GetName(), err)
	}
}

// helm install creates the release's objects in the API server, and helm uninstall removes every one of
// them, cluster-scoped ones included, and Helm's own release records.
func TestInstallUninstall_LeavesNothingBehind(t *testing.T) {
	cp := kubetest.Start(t)
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, dyn)
	ns := cp.Namespace(t, "chart-install")
	rel := "tgi-" + ns[len(ns)-8:]
	set := append(slices.Clone(valueSets[2].sets), "config.base_domain=tenants.test")
	args := []string{"install", rel, chartDir(t), "--namespace", ns}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	if out, err := runHelm(t, cp.Kubeconfig, args...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	rendered := render(t, rel, ns, valueSets[2].args()...)
	before := releaseObjects(t, cp, dyn, ns, rel)
	for _, o := range rendered {
		if o.GetKind() == "Pod" { // the helm test hook runs only on `helm test`
			continue
		}
		key := o.GetKind() + " " + o.GetName()
		if !slices.Contains(before, key) {
			t.Errorf("helm install did not create %s (found %v)", key, before)
		}
	}
	if out, err := runHelm(t, cp.Kubeconfig, "uninstall", rel, "--namespace", ns, "--wait", "--timeout", "60s"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if left := releaseObjects(t, cp, dyn, ns, rel); len(left) != 0 {
		t.Errorf("helm uninstall left %v", left)
	}
	secrets, err := cp.Client().CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "owner=helm,name=" + rel})
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets.Items) != 0 {
		t.Errorf("helm uninstall left %d release records", len(secrets.Items))
	}
}

// releaseObjects lists every object of every listable kind, namespaced (in ns) and cluster-scoped, that
// carries the release's instance label.
func releaseObjects(t *testing.T, cp *kubetest.ControlPlane, dyn dynamic.Interface, ns, rel string) []string {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		t.Fatal(err)
	}
	selector := "app.kubernetes.io/instance=" + rel
	var found []string
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || r.Kind == "Event" {
				continue
			}
			var res dynamic.ResourceInterface = dyn.Resource(gv.WithResource(r.Name))
			if r.Namespaced {
				res = dyn.Resource(gv.WithResource(r.Name)).Namespace(ns)
			}
			items, err := res.List(context.Background(), metav1.ListOptions{LabelSelector: selector})
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue
			}
			if err != nil {
				t.Fatalf("list %s: %v", r.Name, err)
			}
			for _, it := range items.Items {
				if it.GetDeletionTimestamp() != nil {
					continue
				}
				found = append(found, fmt.Sprintf("%s %s", r.Kind, it.GetName()))
			}
		}
	}
	return found
}
