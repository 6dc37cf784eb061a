package provisioner_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/kube"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

// TestChangePlan_ConcurrentChangesEndWithTheBudgetOfTheRegistrysPlan sends, round after round, one
// plan change per other plan at once for one tenant (through one or two provisioners, and with
// suspensions and resumptions racing them). Every change is accepted or refused with a conflict;
// once the sagas are done, the registry holds a plan an accepted change asked for, no refused
// change's plan was ever stored, and the Kubernetes budget applied is the registry's plan.
func TestChangePlan_ConcurrentChangesEndWithTheBudgetOfTheRegistrysPlan(t *testing.T) {
	cases := []struct {
		name     string
		replicas int
		toggle   bool // suspend and resume the tenant over and over meanwhile
	}{
		{name: "one provisioner", replicas: 1},
		{name: "two provisioners", replicas: 2},
		{name: "two provisioners while suspend and resume race", replicas: 2, toggle: true},
	}
	const rounds = 8
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			stored := &planLog{Registry: e.reg, plans: map[string][]string{}}
			e.reg = stored // every write of the API and of the steps goes through it
			ps := make([]*running, c.replicas)
			for i := range ps {
				ps[i] = e.start(t, provOpts{})
			}
			ctx := context.Background()
			req := request(tenant.Pool, "plans")
			v, _, err := ps[0].Create(ctx, req, "")
			if err != nil {
				t.Fatal(err)
			}
			id := v.Tenant.ID
			if v = waitSettled(t, ps[0].Provisioner, id, 20*time.Second); v.Tenant.Status != tenant.Active {
				t.Fatalf("creation ended %s", v.Tenant.Status)
			}
			if c.toggle {
				stop := toggleSuspension(t, ps[0].Provisioner, id)
				defer stop()
			}

			for round := range rounds {
				before := v.Tenant.Plan
				var plans []string
				for _, p := range slices.Sorted(maps.Keys(config.DefaultPlans())) {
					if p != before {
						plans = append(plans, p)
					}
				}
				storesBefore := stored.count(id)
				errs := make([]error, len(plans))
				var wg sync.WaitGroup
				gate := make(chan struct{})
				for i, p := range plans {
					wg.Go(func() {
						<-gate
						_, errs[i] = ps[i%len(ps)].ChangePlan(ctx, id, p)
					})
				}
				close(gate)
				wg.Wait()

				var accepted, refused []string
				for i, err := range errs {
					switch {
					case err == nil:
						accepted = append(accepted, plans[i])
					case errors.Is(err, provisioner.ErrConflict):
						refused = append(refused, plans[i])
					default:
						t.Fatalf("round %d: change to %s: %v, want success or a conflict", round, plans[i], err)
					}
				}
				if len(accepted) == 0 {
					t.Fatalf("round %d: every change refused", round)
				}
				v = waitSettled(t, ps[0].Provisioner, id, 20*time.Second)
				if !slices.Contains(accepted, v.Tenant.Plan) {
					t.Errorf("round %d: the registry holds %s; accepted %v, refused %v", round, v.Tenant.Plan, accepted, refused)
				}
				for _, p := range stored.since(id, storesBefore) {
					if p != before && !slices.Contains(accepted, p) {
						t.Errorf("round %d: plan %s was stored, though its change was refused (accepted %v)", round, p, accepted)
					}
				}
				checkBudget(t, e, req.Slug, v.Tenant.Plan)
				if t.Failed() {
					t.Fatalf("round %d failed; saga %+v\n%s", round, v.Saga, journal(t, e, v.Saga))
				}
			}
		})
	}
}

// TestChangePlan_InterruptedChangeStillConverges interrupts a plan change between its writes: the
// process dies after the update saga started and before the API stored the plan; a concurrent write
// of the tenant wins over the API's store; the process dies after the saga stored the plan, and before
// and after the kubernetes step's work. Each time the registry ends with the new plan (the saga
// completes the change it carries) and the budget applied is that plan's.
func TestChangePlan_InterruptedChangeStillConverges(t *testing.T) {
	const (
		storeDies  = "dies"  // the process dies just before the API's store of the plan
		storeLoses = "loses" // the tenant is suspended just before the API's store of the plan
	)
	cases := []struct {
		name      string
		store     string     // what happens to the API's store; "" it lands
		killStep  string     // the update saga's step in which the process dies; "" none
		killPhase saga.Phase // before or after the step's work
	}{
		{name: "process dies between starting the saga and storing the plan", store: storeDies},
		{name: "a concurrent write wins over the API's store", store: storeLoses},
		{name: "process dies after the registry-plan step's work", killStep: steps.RegistryPlan, killPhase: saga.After},
		{name: "process dies before the kubernetes step's work", killStep: steps.Kubernetes, killPhase: saga.Before},
		{name: "process dies after the kubernetes step's work", killStep: steps.Kubernetes, killPhase: saga.After},
	}
	const from, to = "starter", "enterprise"
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			req := request(tenant.Pool, "interrupted")
			first := e.start(t, provOpts{})
			v, _, err := first.Create(ctx, req, "")
			if err != nil {
				t.Fatal(err)
			}
			id := v.Tenant.ID
			if v = waitSettled(t, first.Provisioner, id, 20*time.Second); v.Tenant.Status != tenant.Active || v.Tenant.Plan != from {
				t.Fatalf("creation ended %s on plan %s", v.Tenant.Status, v.Tenant.Plan)
			}
			first.stop()

			var victim *running
			killed := make(chan struct{})
			apiDone := make(chan struct{})
			hook := func(ctx context.Context, ev saga.Event) error {
				if ev.Kind != saga.Update || ev.Action != saga.DoAction {
					return nil
				}
				if ev.Step == c.killStep && ev.Phase == c.killPhase {
					close(killed)
					go victim.stop() // the process dies: its context ends mid-step, nothing more is written
					<-ctx.Done()
					return ctx.Err()
				}
				if c.store != "" && ev.Step == steps.RegistryPlan && ev.Phase == saga.Before {
					// The saga's own store waits for the API's, so that the API's is the one interrupted.
					select {
					case <-apiDone:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}
			api := &interceptedRegistry{Registry: e.reg, before: func(ctx context.Context, tn tenant.Tenant) error {
				if tn.Plan != to {
					return nil
				}
				switch c.store {
				case storeDies:
					close(killed)
					victim.stop()
					return errProcessDied
				case storeLoses:
					cur, err := e.reg.Get(ctx, tn.ID)
					if err != nil {
						return err
					}
					cur.Status = tenant.Suspended
					_, err = e.reg.Update(ctx, cur)
					return err
				}
				return nil
			}}
			victim = e.start(t, provOpts{hook: hook, lease: time.Second, registry: api})

			got, err := victim.ChangePlan(ctx, id, to)
			close(apiDone)
			switch c.store {
			case storeDies:
				if err == nil || errors.Is(err, provisioner.ErrConflict) {
					t.Fatalf("change with the process dying: %v, want an error other than a conflict", err)
				}
			case storeLoses:
				if err != nil {
					t.Fatal(err)
				}
				if got.Tenant.Plan != from || got.Tenant.Status != tenant.Suspended {
					t.Fatalf("answer %s on plan %s: the API's store did not lose", got.Tenant.Status, got.Tenant.Plan)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
			}
			p := victim.Provisioner
			if c.store == storeDies || c.killStep != "" {
				select {
				case <-killed:
				case <-time.After(20 * time.Second):
					t.Fatal("the process never reached the point where it dies")
				}
				victim.stop()
				p = e.start(t, provOpts{lease: time.Second}).Provisioner
			}
			v = waitSettled(t, p, id, 30*time.Second)
			if v.Tenant.Plan != to || v.Saga.Kind != saga.Update || v.Saga.State != saga.Done {
				t.Fatalf("ended on plan %s, saga %+v\n%s", v.Tenant.Plan, v.Saga, journal(t, e, v.Saga))
			}
			checkBudget(t, e, req.Slug, v.Tenant.Plan)
		})
	}
}

// TestChangePlan_GivingWayToADeletionChangesNothing deletes the tenant after a plan change started
// its update saga and before it stored the plan: the deletion cancels the saga, which has not run,
// so the change is refused and the tenant is deleted on its old plan.
func TestChangePlan_GivingWayToADeletionChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	req := request(tenant.Pool, "superseded")
	first := e.start(t, provOpts{})
	v, _, err := first.Create(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	id := v.Tenant.ID
	if v = waitSettled(t, first.Provisioner, id, 20*time.Second); v.Tenant.Status != tenant.Active {
		t.Fatalf("creation ended %s", v.Tenant.Status)
	}
	first.stop() // no worker takes the update saga: the deletion finds it waiting

	from, to := v.Tenant.Plan, "enterprise"
	var api *running
	api = e.start(t, provOpts{idle: true, registry: &interceptedRegistry{Registry: e.reg,
		before: func(ctx context.Context, tn tenant.Tenant) error {
			if tn.Plan != to {
				return nil
			}
			_, err := api.Delete(ctx, tn.ID)
			return err
		}}})
	if _, err := api.ChangePlan(ctx, id, to); !errors.Is(err, provisioner.ErrConflict) {
		t.Fatalf("change overtaken by a deletion: %v, want a conflict", err)
	}
	if tn := must[tenant.Tenant](t)(e.reg.Get(ctx, id)); tn.Plan != from || tn.Status != tenant.Deleting {
		t.Fatalf("after the refused change: %s on plan %s, want deleting on %s", tn.Status, tn.Plan, from)
	}
	v = waitSettled(t, e.start(t, provOpts{}).Provisioner, id, 20*time.Second)
	if v.Tenant.Status != tenant.Deleted || v.Tenant.Plan != from {
		t.Fatalf("ended %s on plan %s, want deleted on %s", v.Tenant.Status, v.Tenant.Plan, from)
	}
	if inv := e.inventory(t, v.Tenant, ""); len(inv.Kube) != 0 {
		t.Errorf("kubernetes objects left: %v", inv.Kube)
	}
}

// TestRetry_PlanStoredWhileTheRetryStartsIsApplied changes a failed tenant's plan after its retry
// read the tenant, before the retried creation runs. A plan change looks for a saga in flight before
// it stores the plan, so its store can land there, as the hook's does; the creation must apply the
// plan the registry holds, not the one the retry read.
func TestRetry_PlanStoredWhileTheRetryStartsIsApplied(t *testing.T) {
	e := newEnv(t)
	const to = "enterprise"
	var broken atomic.Bool
	broken.Store(true)
	var once sync.Once
	p := e.start(t, provOpts{hook: func(ctx context.Context, ev saga.Event) error {
		if ev.Kind != saga.Create || ev.Action != saga.DoAction || ev.Phase != saga.Before {
			return nil
		}
		if broken.Load() {
			if ev.Step == steps.DNS {
				return errInjected
			}
			return nil
		}
		var err error
		if ev.Step == steps.RegistryProvisioning {
			once.Do(func() {
				var tn tenant.Tenant
				if tn, err = e.reg.Get(ctx, ev.TenantID); err == nil {
					tn.Plan = to
					_, err = e.reg.Update(ctx, tn)
				}
			})
		}
		return err
	}})
	ctx := context.Background()
	req := request(tenant.Pool, "retried")
	v, _, err := p.Create(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second); v.Tenant.Status != tenant.Failed {
		t.Fatalf("creation ended %s", v.Tenant.Status)
	}
	broken.Store(false)
	if _, err := p.Retry(ctx, v.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second)
	if v.Tenant.Status != tenant.Active || v.Tenant.Plan != to {
		t.Fatalf("retry ended %s on plan %s\n%s", v.Tenant.Status, v.Tenant.Plan, journal(t, e, v.Saga))
	}
	checkBudget(t, e, req.Slug, v.Tenant.Plan)
}

var errProcessDied = errors.New("the process died")

// interceptedRegistry runs before ahead of every write of a tenant.
type interceptedRegistry struct {
	registry.Registry
	before func(ctx context.Context, t tenant.Tenant) error
}

func (r *interceptedRegistry) Update(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error) {
	if err := r.before(ctx, t); err != nil {
		return tenant.Tenant{}, err
	}
	return r.Registry.Update(ctx, t)
}

// checkBudget fails unless the tenant's namespace quota is plan's (its label and its pod count, which
// differs from plan to plan).
func checkBudget(t testing.TB, e *env, slug, plan string) {
	t.Helper()
	q := e.kube.Get(kube.Ref{APIVersion: "v1", Kind: "ResourceQuota", Namespace: "tenant-" + slug, Name: kube.QuotaTotal})
	if q == nil {
		t.Fatalf("no %s quota for tenant %s", kube.QuotaTotal, slug)
	}
	pods, _, _ := unstructured.NestedString(q.Object, "spec", "hard", "pods")
	if label, want := q.GetLabels()[kube.LabelPlan], config.DefaultKubernetesPlans()[plan].Quota["pods"]; label != plan || pods != want {
		t.Errorf("applied budget: plan %s with %s pods; the registry's plan is %s (%s pods)", label, pods, plan, want)
	}
}

// toggleSuspension suspends and resumes the tenant over and over until the returned stop is called.
func toggleSuspension(t testing.TB, p *provisioner.Provisioner, id string) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx := context.Background()
		for suspend := true; ; suspend = !suspend {
			select {
			case <-done:
				return
			default:
			}
			action := p.Resume
			if suspend {
				action = p.Suspend
			}
			if _, err := action(ctx, id); err != nil && !errors.Is(err, provisioner.ErrConflict) {
				t.Errorf("suspend %v: %v", suspend, err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	return func() { close(done); wg.Wait() }
}

// planLog is a registry that notes the plan of every tenant it stores.
type planLog struct {
	registry.Registry
	mu    sync.Mutex
	plans map[string][]string // tenant id -> the plan of each write, in order
}

func (l *planLog) Update(ctx context.Context, t tenant.Tenant) (tenant.Tenant, error) {
	stored, err := l.Registry.Update(ctx, t)
	if err == nil {
		l.mu.Lock()
		l.plans[t.ID] = append(l.plans[t.ID], stored.Plan)
		l.mu.Unlock()
	}
	return stored, err
}

func (l *planLog) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.plans[id])
}

// since returns the plans of the tenant's writes after the first n.
func (l *planLog) since(id string, n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.plans[id][n:])
}
