package provisioner_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

// TestReplicas_TwoProvisionersNeverRunOneSagaTwice runs two provisioners on one database while
// tenants are created through both, and counts every step action each one starts.
func TestReplicas_TwoProvisionersNeverRunOneSagaTwice(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	runs := map[string]int{}      // saga/step -> do actions started
	byReplica := map[string]int{} // replica -> do actions started
	hook := func(replica string) saga.Hook {
		return func(_ context.Context, ev saga.Event) error {
			if ev.Phase == saga.Before && ev.Action == saga.DoAction {
				mu.Lock()
				runs[ev.SagaID+"/"+ev.Step]++
				byReplica[replica]++
				mu.Unlock()
			}
			return nil
		}
	}
	a := e.start(t, provOpts{hook: hook("a"), workers: 4})
	b := e.start(t, provOpts{hook: hook("b"), workers: 4})

	const n = 16
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p := a
			if i%2 == 1 {
				p = b
			}
			model := tenant.Pool
			if i%4 == 0 {
				model = tenant.Namespace
			}
			v, _, err := p.Create(context.Background(), request(model, fmt.Sprintf("replica-%02d", i)), "")
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = v.Tenant.ID
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, id := range ids {
		if v := waitSettled(t, a.Provisioner, id, 60*time.Second); v.Tenant.Status != tenant.Active {
			t.Errorf("tenant %s ended %s: %s", id, v.Tenant.Status, v.Tenant.LastError)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	perSaga := len(createSteps)
	if len(runs) != n*perSaga {
		t.Errorf("%d saga steps ran, want %d", len(runs), n*perSaga)
	}
	for k, c := range runs {
		if c != 1 {
			t.Errorf("%s ran %d times", k, c)
		}
	}
	if byReplica["a"] == 0 || byReplica["b"] == 0 {
		t.Errorf("work was not shared: %v", byReplica)
	}
	// The journal agrees: one start per step per saga.
	var dup int
	if err := e.db.QueryRow(context.Background(), `SELECT count(*) FROM (SELECT saga_id, step FROM `+saga.Schema+`.saga_events
		WHERE event = 'started' GROUP BY saga_id, step HAVING count(*) > 1) d`).Scan(&dup); err != nil {
		t.Fatal(err)
	}
	if dup != 0 {
		t.Errorf("%d steps started twice in the journal", dup)
	}
	for i := range n {
		if got := len(e.smtp.to(fmt.Sprintf("owner@replica-%02d.example", i))); got != 1 {
			t.Errorf("tenant %d got %d welcome emails", i, got)
		}
	}
}

// TestRetry_FailedCreationStartsAgainAndSucceeds fails the DNS step for good, then retries once the
// fault is gone.
func TestRetry_FailedCreationStartsAgainAndSucceeds(t *testing.T) {
	e := newEnv(t)
	var broken sync.Map
	broken.Store(steps.DNS, true)
	p := e.start(t, provOpts{hook: func(_ context.Context, ev saga.Event) error {
		if _, bad := broken.Load(ev.Step); bad && ev.Action == saga.DoAction {
			return errInjected
		}
		return nil
	}})
	ctx := context.Background()
	req := request(tenant.Bridge, "retry-me")
	v, _, err := p.Create(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second)
	if v.Tenant.Status != tenant.Failed || v.Saga.Attempt != 0 || v.Saga.LastError == "" {
		t.Fatalf("after the failing run: %s %+v", v.Tenant.Status, v.Saga)
	}
	if inv := e.inventory(t, v.Tenant, req.AdminEmail); !inv.empty() {
		t.Fatalf("failed but left %s", describe(inv))
	}
	broken.Delete(steps.DNS)
	if _, err := p.Retry(ctx, v.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second)
	if v.Tenant.Status != tenant.Active || v.Tenant.LastError != "" {
		t.Fatalf("after retry: %s (%s)", v.Tenant.Status, v.Tenant.LastError)
	}
	if got := e.inventory(t, v.Tenant, req.AdminEmail); !sameInventory(got, wantActive(e, tenant.Bridge, "retry-me")) {
		t.Fatalf("after retry: %s", describe(got))
	}
}

// TestDelete_FailedTenantLeavesOnlyItsTombstone deletes a tenant whose creation was compensated: every
// deletion step finds nothing to remove and the tenant ends deleted.
func TestDelete_FailedTenantLeavesOnlyItsTombstone(t *testing.T) {
	e := newEnv(t)
	p := e.start(t, provOpts{hook: func(_ context.Context, ev saga.Event) error {
		if ev.Step == steps.AdminUser && ev.Action == saga.DoAction {
			return errInjected
		}
		return nil
	}})
	ctx := context.Background()
	req := request(tenant.Bridge, "doomed")
	v, _, err := p.Create(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	if v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second); v.Tenant.Status != tenant.Failed {
		t.Fatalf("creation ended %s", v.Tenant.Status)
	}
	if _, err := p.Delete(ctx, v.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second)
	if v.Tenant.Status != tenant.Deleted || v.Saga.Kind != saga.Delete || v.Saga.State != saga.Done {
		t.Fatalf("deletion ended %s, saga %+v", v.Tenant.Status, v.Saga)
	}
	if inv := e.inventory(t, v.Tenant, req.AdminEmail); !inv.empty() {
		t.Fatalf("left behind: %s", describe(inv))
	}
	if _, err := p.Retry(ctx, v.Tenant.ID); err == nil {
		t.Error("a deleted tenant was retried")
	}
}
