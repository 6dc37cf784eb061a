package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/kubetest"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/provisioner/kube"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

// Priority classes of the plans under test, as the chart makes them, and one no plan names.
const (
	classCritical = "tenant-critical"
	classBatch    = "tenant-batch"
	classOther    = "kubetest-other"
	fieldManager  = "tenantgate"
)

// tightPlan makes every rule reachable with a handful of pods: the class shares add up to more than
// the namespace total, so the total, each class and the unclassified share can each be the one that
// refuses a pod.
var tightPlan = config.KubernetesPlan{
	Quota: config.Resources{"pods": "5", "requests.cpu": "2", "requests.memory": "2Gi"},
	PriorityClasses: map[string]config.Resources{
		classCritical: {"pods": "3"},
		classBatch:    {"pods": "2"},
	},
	Unclassified:   config.Resources{"pods": "1"},
	DefaultRequest: config.Resources{"cpu": "50m", "memory": "32Mi"},
	DefaultLimit:   config.Resources{"cpu": "250m", "memory": "64Mi"},
}

// env is one test's view of the cluster and of the provisioner's Kubernetes step.
type env struct {
	cp      *kubetest.ControlPlane
	client  kubernetes.Interface
	catalog *steps.Catalog
}

func newEnv(t *testing.T, opts ...kubetest.Option) *env {
	t.Helper()
	cp := kubetest.Start(t, opts...)
	dyn, err := dynamic.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), testenv.Database(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	plans := config.DefaultKubernetesPlans()
	plans["tight"] = tightPlan
	cat, err := steps.NewCatalog(steps.Deps{
		Registry:   registry.NewMemory(),
		State:      pool,
		BaseDomain: "tenants.test",
		Kube:       kube.NewDynamic(dyn, fieldManager),
		KubePlans:  plans,
		KubePrefix: "tenant-",
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cp: cp, client: cp.Client(), catalog: cat}
	e.ensurePriorityClasses(t)
	return e
}

func (e *env) ensurePriorityClasses(t *testing.T) {
	t.Helper()
	never := corev1.PreemptNever
	for name, value := range map[string]int32{classCritical: 100000, classBatch: 1000, classOther: 500} {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value, PreemptionPolicy: &never}
		_, err := e.client.SchedulingV1().PriorityClasses().Create(context.Background(), pc, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("priority class %s: %v", name, err)
		}
	}
}

// run is a saga run of a new tenant on plan.
func newRun(plan string) *saga.Run {
	id := uuid.NewString()
	return &saga.Run{SagaID: uuid.NewString(), Kind: saga.Create, Attempt: 1, Spec: saga.Spec{
		TenantID: id, Slug: "kt-" + testenv.Suffix(), Name: "Kubetest", Plan: plan, Model: tenant.Namespace,
	}}
}

func (e *env) step(t *testing.T) saga.Step {
	t.Helper()
	s, ok := e.catalog.Step(steps.Kubernetes)
	if !ok {
		t.Fatal("the catalog has no kubernetes step")
	}
	return s
}

// provision runs the kubernetes step for a new tenant, undoes it at cleanup, and returns the run and
// the tenant's namespace.
func (e *env) provision(t *testing.T, plan string) (*saga.Run, string) {
	t.Helper()
	r := newRun(plan)
	s := e.step(t)
	if err := s.Do(context.Background(), r); err != nil {
		t.Fatalf("kubernetes step: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Undo(context.Background(), r); err != nil {
			t.Errorf("undo: %v", err)
		}
	})
	return r, recordedNamespace(t, r)
}

func recordedNamespace(t *testing.T, r *saga.Run) string {
	t.Helper()
	var made struct {
		Namespace string `json:"namespace"`
	}
	ok, err := r.Made(steps.Kubernetes, &made)
	if err != nil || !ok || made.Namespace == "" {
		t.Fatalf("the step recorded no namespace (ok=%v, err=%v)", ok, err)
	}
	return made.Namespace
}

// waitQuotasSynced waits until the resourcequota controller has computed the status of every quota in
// ns: until then the API server refuses every pod there.
func (e *env) waitQuotasSynced(t *testing.T, ns string) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		list, err := e.client.CoreV1().ResourceQuotas(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return errors.New("no quotas")
		}
		for _, q := range list.Items {
			if len(q.Status.Hard) != len(q.Spec.Hard) {
				return fmt.Errorf("quota %s not synced", q.Name)
			}
		}
		return nil
	})
}

// createPod creates an unschedulable-anywhere pod (there is no kubelet) of the given priority class
// ("" for none) whose container states no resources.
func (e *env) createPod(ns, class string) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "p-", Namespace: ns},
		Spec: corev1.PodSpec{
			PriorityClassName: class,
			Containers:        []corev1.Container{{Name: "app", Image: "registry.invalid/app:1"}},
		},
	}
	return e.client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
