package kubernetes

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/kubetest"
	"github.com/tenantgate/tenantgate/provisioner/kube"
)

// objectVersions is the resourceVersion of every object the step makes in ns, by "Kind name".
func (e *env) objectVersions(t *testing.T, ns string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	n, err := e.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("namespace %s: %v", ns, err)
	}
	out["Namespace "+ns] = n.ResourceVersion
	quotas, err := e.client.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range quotas.Items {
		out["ResourceQuota "+q.Name] = q.ResourceVersion
	}
	lrs, err := e.client.CoreV1().LimitRanges(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lrs.Items {
		out["LimitRange "+l.Name] = l.ResourceVersion
	}
	nps, err := e.client.NetworkingV1().NetworkPolicies(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range nps.Items {
		out["NetworkPolicy "+p.Name] = p.ResourceVersion
	}
	return out
}

func TestKubernetesStep_AppliesTenantObjectsWithServerSideApply(t *testing.T) {
	e := newEnv(t)
	r, ns := e.provision(t, "tight")
	ctx := context.Background()

	n, err := e.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels[kube.LabelTenantID] != r.Spec.TenantID || n.Labels[kube.LabelPlan] != "tight" {
		t.Errorf("namespace labels %v do not name tenant %s on plan tight", n.Labels, r.Spec.TenantID)
	}
	want := []string{
		"LimitRange " + kube.LimitRangeName,
		"Namespace " + ns,
		"NetworkPolicy " + kube.NetworkPolicyName,
		"ResourceQuota " + kube.QuotaClassPrefix + classBatch,
		"ResourceQuota " + kube.QuotaClassPrefix + classCritical,
		"ResourceQuota " + kube.QuotaTotal,
		"ResourceQuota " + kube.QuotaUnclassified,
	}
	var got []string
	for k := range e.objectVersions(t, ns) {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("objects in %s:\n got %v\nwant %v", ns, got, want)
	}
	total, err := e.client.CoreV1().ResourceQuotas(ns).Get(ctx, kube.QuotaTotal, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if q := total.Spec.Hard[corev1.ResourcePods]; q.Cmp(resource.MustParse(tightPlan.Quota["pods"])) != 0 {
		t.Errorf("total pods quota %s, want the plan's %s", q.String(), tightPlan.Quota["pods"])
	}
	// Server-side apply: the step's field manager owns the fields, through an Apply operation.
	applied := false
	for _, mf := range total.ManagedFields {
		if mf.Manager == fieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			applied = true
		}
	}
	if !applied {
		t.Errorf("quota fields are not owned by %q through server-side apply: %s", fieldManager, mustJSON(total.ManagedFields))
	}
}

func TestKubernetesStep_RerunChangesNothing(t *testing.T) {
	// With the controllers running and the quota status computed, nothing but a re-run could change
	// the objects between the two looks.
	e := newEnv(t, kubetest.WithControllers())
	r, ns := e.provision(t, "tight")
	e.waitQuotasSynced(t, ns)
	before := e.objectVersions(t, ns)
	for range 2 {
		if err := e.step(t).Do(context.Background(), r); err != nil {
			t.Fatalf("re-run: %v", err)
		}
	}
	after := e.objectVersions(t, ns)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("a re-run changed objects:\nbefore %v\n after %v", before, after)
	}
}

// Compensation removes every object and the namespace itself: with the namespace controller running,
// the namespace is really gone, not left Terminating.
func TestKubernetesStep_UndoRemovesTheNamespace(t *testing.T) {
	e := newEnv(t, kubetest.WithControllers())
	r := newRun("tight")
	s := e.step(t)
	ctx := context.Background()
	if err := s.Do(ctx, r); err != nil {
		t.Fatal(err)
	}
	ns := recordedNamespace(t, r)
	e.waitQuotasSynced(t, ns)
	if _, err := e.createPod(ns, classCritical); err != nil { // content the namespace controller must empty
		t.Fatalf("pod: %v", err)
	}
	if err := s.Undo(ctx, r); err != nil {
		t.Fatalf("undo: %v", err)
	}
	eventually(t, 60*time.Second, func() error {
		_, err := e.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("namespace %s still exists (err %v)", ns, err)
	})
	if err := s.Undo(ctx, r); err != nil {
		t.Errorf("a second undo of a removed tenant fails: %v", err)
	}
}

// refusedBy reports whether err is the API server refusing a pod because of the named quota.
func refusedBy(err error, quota string) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota: "+quota)
}

func TestQuotas_EnforcedPerPlanAndClass(t *testing.T) {
	e := newEnv(t, kubetest.WithControllers())
	_, ns := e.provision(t, "tight")
	e.waitQuotasSynced(t, ns)

	// The tenant's batch work fills its class share...
	for i := range 2 {
		if _, err := e.createPod(ns, classBatch); err != nil {
			t.Fatalf("batch pod %d refused within the class share: %v", i+1, err)
		}
	}
	if _, err := e.createPod(ns, classBatch); !refusedBy(err, kube.QuotaClassPrefix+classBatch) {
		t.Fatalf("a batch pod past the class share: got %v, want refused by %s", err, kube.QuotaClassPrefix+classBatch)
	}
	// ...and an operator-critical pod is still admitted.
	if _, err := e.createPod(ns, classCritical); err != nil {
		t.Fatalf("an operator-critical pod is blocked by exhausted batch work: %v", err)
	}
	// Pods naming no class have their own share and cannot borrow the others'.
	if _, err := e.createPod(ns, ""); err != nil {
		t.Fatalf("unclassified pod within its share refused: %v", err)
	}
	if _, err := e.createPod(ns, ""); !refusedBy(err, kube.QuotaUnclassified) {
		t.Fatalf("an unclassified pod past its share: got %v, want refused by %s", err, kube.QuotaUnclassified)
	}
	// 4 pods now: one more critical pod fills the plan's total of 5; the next is refused by the total,
	// although the critical class (3 pods) has room.
	if _, err := e.createPod(ns, classCritical); err != nil {
		t.Fatalf("critical pod within the class share and the total: %v", err)
	}
	if _, err := e.createPod(ns, classCritical); !refusedBy(err, kube.QuotaTotal) {
		t.Fatalf("a pod beyond the plan's total: got %v, want refused by %s", err, kube.QuotaTotal)
	}
}

// A pod naming a priority class the plan does not know must not slip past the class and unclassified
// shares: it counts against the unclassified share like a pod naming no class.
func TestQuotas_PodOfAnotherClassCannotSlipPast(t *testing.T) {
	e := newEnv(t, kubetest.WithControllers())
	_, ns := e.provision(t, "tight")
	e.waitQuotasSynced(t, ns)

	if _, err := e.createPod(ns, classOther); err != nil {
		t.Fatalf("first pod of another class refused: %v", err)
	}
	_, err := e.createPod(ns, classOther)
	if err == nil {
		t.Fatalf("a second pod of class %s was admitted past the unclassified share (pods: 1)", classOther)
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "exceeded quota") {
		t.Fatalf("second pod of another class: %v, want refused by a quota", err)
	}
	if _, err := e.createPod(ns, ""); !refusedBy(err, kube.QuotaUnclassified) {
		t.Fatalf("an unclassified pod after the other class used the share: got %v", err)
	}
	if _, err := e.createPod(ns, classCritical); err != nil {
		t.Fatalf("operator-critical pod blocked by pods of another class: %v", err)
	}
}

// The shipped plans work as shipped: on the free plan batch work hits its class share and an
// operator-critical pod is still admitted.
func TestQuotas_DefaultFreePlanKeepsCriticalRoom(t *testing.T) {
	e := newEnv(t, kubetest.WithControllers())
	_, ns := e.provision(t, "free")
	e.waitQuotasSynced(t, ns)
	admitted := 0
	for {
		_, err := e.createPod(ns, classBatch)
		if err != nil {
			if !refusedBy(err, kube.QuotaClassPrefix+classBatch) {
				t.Fatalf("batch pod %d: %v, want refused by the batch class quota", admitted+1, err)
			}
			break
		}
		admitted++
		if admitted > 20 {
			t.Fatal("more than 20 batch pods admitted on the free plan")
		}
	}
	if admitted == 0 {
		t.Fatal("no batch pod admitted at all")
	}
	if _, err := e.createPod(ns, classCritical); err != nil {
		t.Fatalf("operator-critical pod refused after %d batch pods: %v", admitted, err)
	}
}

func TestLimitRange_ContainerWithoutResourcesGetsPlanDefaults(t *testing.T) {
	e := newEnv(t, kubetest.WithControllers())
	_, ns := e.provision(t, "tight")
	e.waitQuotasSynced(t, ns)
	pod, err := e.createPod(ns, classCritical)
	if err != nil {
		t.Fatal(err)
	}
	res := pod.Spec.Containers[0].Resources
	for name, want := range map[string]struct {
		got  resource.Quantity
		want string
	}{
		"requests.cpu":    {res.Requests[corev1.ResourceCPU], tightPlan.DefaultRequest["cpu"]},
		"requests.memory": {res.Requests[corev1.ResourceMemory], tightPlan.DefaultRequest["memory"]},
		"limits.cpu":      {res.Limits[corev1.ResourceCPU], tightPlan.DefaultLimit["cpu"]},
		"limits.memory":   {res.Limits[corev1.ResourceMemory], tightPlan.DefaultLimit["memory"]},
	} {
		if want.got.Cmp(resource.MustParse(want.want)) != 0 {
			t.Errorf("%s = %s, want the plan's default %s", name, want.got.String(), want.want)
		}
	}
}

// A plan change re-runs the step (the update saga): the quotas take the new plan's budget in place.
func TestKubernetesStep_PlanChangeUpdatesQuotasInPlace(t *testing.T) {
	e := newEnv(t)
	r, ns := e.provision(t, "tight")
	ctx := context.Background()
	before, err := e.client.CoreV1().ResourceQuotas(ns).Get(ctx, kube.QuotaTotal, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.Spec.Plan = "free"
	if err := e.step(t).Do(ctx, r); err != nil {
		t.Fatalf("re-run on the new plan: %v", err)
	}
	after, err := e.client.CoreV1().ResourceQuotas(ns).Get(ctx, kube.QuotaTotal, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != before.UID {
		t.Error("the quota was replaced, not updated in place")
	}
	want := resource.MustParse(config.DefaultKubernetesPlans()["free"].Quota["pods"])
	if got := after.Spec.Hard[corev1.ResourcePods]; got.Cmp(want) != 0 {
		t.Errorf("total pods after the plan change = %s, want free's %s", got.String(), want.String())
	}
	if after.Labels[kube.LabelPlan] != "free" {
		t.Errorf("plan label = %q, want free", after.Labels[kube.LabelPlan])
	}
}
