package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
	"github.com/tenantgate/tenantgate/ratelimit"
)

// deleteSteps are the steps of a deletion, in order, with every optional step on.
var deleteSteps = []string{steps.RegistryDeleting, steps.PurgeCounters, steps.RemoveAdminUser, steps.RemoveDNS,
	steps.RemoveKubernetes, steps.RemoveDatabase, steps.RegistryDeleted}

// The faults injected into a deletion step.
const (
	faultTransient  = "transient"  // the step does its work, then reports an error on its first attempt only
	faultPersistent = "persistent" // the step cannot start its work, on every attempt, until healed
	// the step does its work, then reports an error, on every attempt until healed
	faultPersistentAfter = "persistent-after"
	faultKill            = "kill"        // the process dies after the step's work, before it is recorded
	faultKillBefore      = "kill-before" // the process dies after the step is recorded as started, before its work
)

var deleteFaults = []string{faultTransient, faultPersistent, faultPersistentAfter, faultKill, faultKillBefore}

// deleteCase is one tenant whose deletion meets one fault at one step.
type deleteCase struct {
	model   tenant.Model
	step    string
	fault   string
	req     provisioner.CreateRequest
	id      string
	reached chan struct{} // kill faults: closed when the doomed process reached the step
	once    sync.Once
}

// TestDeleteFaults_EveryStepFailingOrKilledEndsDeletedWithNothingLeft injects a fault at every
// deletion step: a transient failure (the deletion still ends deleted), a persistent one before or
// after the step's work (the tenant ends failed, never deleted, keeping exactly what the steps not
// done yet were to remove, and a retry once the fault is gone finishes the deletion), and a crash
// after or before the step's work (a new provisioner on the same database finishes the deletion). Every deletion ends with the tenant
// deleted, its tombstone keeping the id and slug, its rate-limit counters gone from the Redis store
// the steps purge, and nothing left: no database, schema, rows, namespace objects or DNS record.
//
// Pool and namespace tenants meet every fault at every step; bridge and silo tenants at the steps
// that reach into their own database: the admin user's removal and the database's.
//
// All the cases of one model share a database and run at once: one provisioner runs every deletion
// and is killed when each crash case has reached its step; a new one finishes.
func TestDeleteFaults_EveryStepFailingOrKilledEndsDeletedWithNothingLeft(t *testing.T) {
	eachModel(t, func(t *testing.T, model tenant.Model) {
		var cases []*deleteCase
		for i, step := range deleteSteps {
			if (model == tenant.Bridge || model == tenant.Silo) && step != steps.RemoveAdminUser && step != steps.RemoveDatabase {
				continue // the same as for pool tenants, and a database of their own is dear to make
			}
			for _, fault := range deleteFaults {
				slug := fmt.Sprintf("d%d-%s-%s", i, fault, model)
				cases = append(cases, &deleteCase{model: model, step: step, fault: fault, req: request(model, slug),
					reached: make(chan struct{})})
			}
		}
		runDeleteFaults(t, newEnv(t), cases)
	})
}

func runDeleteFaults(t *testing.T, e *env, cases []*deleteCase) {
	ctx := context.Background()
	rd := testenv.NewRedis(t)
	store, err := ratelimit.NewRedisStore(rd.Client, rd.Prefix) // as serve wires the provisioner's purger
	if err != nil {
		t.Fatal(err)
	}
	withStore := func(d *steps.Deps) { d.Purger = store }

	var mu sync.Mutex
	byID := map[string]*deleteCase{}
	var healed atomic.Bool
	var victim *running
	hook := func(ctx context.Context, ev saga.Event) error {
		if ev.Kind != saga.Delete || ev.Action != saga.DoAction {
			return nil
		}
		mu.Lock()
		c := byID[ev.TenantID]
		mu.Unlock()
		if c == nil || ev.Step != c.step {
			return nil
		}
		switch c.fault {
		case faultTransient:
			if ev.Phase == saga.After && ev.Attempt == 1 {
				return errInjected
			}
		case faultPersistent:
			if ev.Phase == saga.Before && !healed.Load() {
				return errInjected
			}
		case faultPersistentAfter:
			if ev.Phase == saga.After && !healed.Load() {
				return errInjected
			}
		case faultKill, faultKillBefore:
			if (c.fault == faultKill) != (ev.Phase == saga.After) {
				return nil
			}
			first := false
			c.once.Do(func() { first = true; close(c.reached) })
			if !first {
				return nil // the new provisioner
			}
			<-ctx.Done() // hung in the step until the process dies
			return ctx.Err()
		}
		return nil
	}
	kills := 0
	for _, c := range cases {
		if c.fault == faultKill || c.fault == faultKillBefore {
			kills++
		}
	}
	// Every crash case holds a worker until the process dies; the rest need workers too. The lease
	// outlives any stall of a busy machine, so the doomed process never loses a saga before it dies.
	victim = e.startWith(t, provOpts{hook: hook, lease: 3 * time.Second, workers: kills + 4}, withStore)

	for _, c := range cases {
		v, _, err := victim.Create(ctx, c.req, "")
		if err != nil {
			t.Fatalf("create %s: %v", c.req.Slug, err)
		}
		c.id = v.Tenant.ID
		mu.Lock()
		byID[c.id] = c
		mu.Unlock()
	}
	lim := newLimiter(t, e, store)
	for _, c := range cases {
		v := waitSettled(t, victim.Provisioner, c.id, 60*time.Second)
		if v.Tenant.Status != tenant.Active {
			t.Fatalf("%s: creation ended %s", c.req.Slug, v.Tenant.Status)
		}
		hitCounters(t, lim, c.id)
		if n := counters(t, rd, c.id); n == 0 {
			t.Fatalf("%s: no rate-limit counters before the deletion", c.req.Slug)
		}
		if _, err := victim.Delete(ctx, c.id); err != nil {
			t.Fatalf("delete %s: %v", c.req.Slug, err)
		}
	}

	// The first process: transient faults end deleted, persistent ones failed, crash cases hang in
	// their step.
	for _, c := range cases {
		switch c.fault {
		case faultKill, faultKillBefore:
			select {
			case <-c.reached:
			case <-time.After(60 * time.Second):
				t.Fatalf("%s: the deletion never reached %s", c.req.Slug, c.step)
			}
		case faultPersistent, faultPersistentAfter:
			t.Run(c.step+"/"+c.fault+"/gave-up", func(t *testing.T) { checkGaveUp(t, e, rd, victim.Provisioner, c) })
		default:
			waitSettled(t, victim.Provisioner, c.id, 60*time.Second)
		}
	}
	victim.stop()
	for _, c := range cases {
		if c.fault != faultKill && c.fault != faultKillBefore {
			continue
		}
		if v := must[provisioner.View](t)(victim.Get(ctx, c.id)); v.Saga == nil || !v.Saga.State.InFlight() {
			t.Fatalf("%s: the doomed process ended the deletion before it died (status %s)", c.req.Slug, v.Tenant.Status)
		}
	}

	// A new process on the same database finishes the crashed deletions and, once the fault is gone,
	// the retried ones.
	next := e.startWith(t, provOpts{hook: hook, lease: time.Second, workers: 8}, withStore)
	healed.Store(true)
	for _, c := range cases {
		if (c.fault != faultPersistent && c.fault != faultPersistentAfter) || goneWhenGivingUp(c) {
			continue
		}
		if _, err := next.Retry(ctx, c.id); err != nil {
			t.Fatalf("retry %s: %v", c.req.Slug, err)
		}
	}
	for _, c := range cases {
		t.Run(c.step+"/"+c.fault, func(t *testing.T) { checkDeleted(t, e, rd, next.Provisioner, c) })
	}
}

// checkGaveUp: a deletion whose step fails for good leaves the tenant failed, never deleted, naming
// the step, with exactly what the steps not done were to remove still there.
//
// The one exception: when the last step, registry-deleted, did its work and then failed, the tenant
// is deleted already, with nothing left (see goneWhenGivingUp).
func checkGaveUp(t *testing.T, e *env, rd *testenv.Redis, p *provisioner.Provisioner, c *deleteCase) {
	v := waitSettled(t, p, c.id, 60*time.Second)
	wantStatus := tenant.Failed
	if goneWhenGivingUp(c) {
		wantStatus = tenant.Deleted
	}
	if v.Tenant.Status != wantStatus || v.Saga.Kind != saga.Delete || v.Saga.State != saga.Failed {
		t.Fatalf("ended %s, want %s; saga %+v\n%s", v.Tenant.Status, wantStatus, v.Saga, journal(t, e, v.Saga))
	}
	if !strings.Contains(v.Saga.LastError, c.step) {
		t.Errorf("saga's last error %q does not name the step", v.Saga.LastError)
	}
	if wantStatus == tenant.Failed && !strings.Contains(v.Tenant.LastError, c.step) {
		t.Errorf("tenant's last error %q does not name the step", v.Tenant.LastError)
	}
	got := e.inventory(t, v.Tenant, c.req.AdminEmail)
	got.Emails = 0
	if want := leftAfterFailing(e, c); !sameInventory(got, want) {
		t.Errorf("left:\n got %s\nwant %s", describe(got), describe(want))
	}
	purged := len(doneBeforeGivingUp(c)) > indexOf(deleteSteps, steps.PurgeCounters)
	if n := counters(t, rd, c.id); (n == 0) != purged {
		t.Errorf("%d rate-limit counters left; purged before the failing step: %v", n, purged)
	}
}

// doneBeforeGivingUp are the steps whose work is done when a deletion gives up at c.step: those
// before it, and the step itself when it failed after its work.
func doneBeforeGivingUp(c *deleteCase) []string {
	n := indexOf(deleteSteps, c.step)
	if c.fault == faultPersistentAfter {
		n++
	}
	return deleteSteps[:n]
}

// goneWhenGivingUp: the deletion gave up after its last step's work, so the tenant is a tombstone.
func goneWhenGivingUp(c *deleteCase) bool {
	return c.fault == faultPersistentAfter && c.step == steps.RegistryDeleted
}

// leftAfterFailing is what a tenant keeps when its deletion gives up at c.step: the steps done
// removed their part, the rest is all there.
func leftAfterFailing(e *env, c *deleteCase) inventory {
	inv := wantActive(e, c.model, c.req.Slug)
	inv.Emails = 0
	for _, step := range doneBeforeGivingUp(c) {
		switch step {
		case steps.RemoveAdminUser:
			inv.PoolRows = 0
		case steps.RemoveDNS:
			inv.DNS = nil
		case steps.RemoveKubernetes:
			inv.Kube = nil
		case steps.RemoveDatabase:
			inv.Databases, inv.Schemas, inv.PoolRows = nil, nil, 0
		}
	}
	return inv
}

// checkDeleted: the tenant is a tombstone (deleted, no resources, its id and slug not reusable),
// its counters are purged and nothing of it is left.
func checkDeleted(t *testing.T, e *env, rd *testenv.Redis, p *provisioner.Provisioner, c *deleteCase) {
	ctx := context.Background()
	v := waitSettled(t, p, c.id, 60*time.Second)
	wantSaga := saga.Done
	if goneWhenGivingUp(c) {
		wantSaga = saga.Failed // not retried: a deleted tenant has nothing to retry
	}
	if v.Tenant.Status != tenant.Deleted || v.Saga.Kind != saga.Delete || v.Saga.State != wantSaga {
		t.Fatalf("ended %s, saga %+v\n%s", v.Tenant.Status, v.Saga, journal(t, e, v.Saga))
	}
	if v.Tenant.Resources != (tenant.Resources{}) || v.Tenant.LastError != "" {
		t.Errorf("tombstone keeps resources %+v, last error %q", v.Tenant.Resources, v.Tenant.LastError)
	}
	inv := e.inventory(t, v.Tenant, c.req.AdminEmail)
	inv.Emails = 0 // an email cannot be taken back
	if !inv.empty() {
		t.Errorf("left behind: %s", describe(inv))
	}
	if n := counters(t, rd, c.id); n != 0 {
		t.Errorf("%d rate-limit counters left", n)
	}
	if _, _, err := p.Create(ctx, c.req, ""); !errors.Is(err, provisioner.ErrConflict) {
		t.Errorf("creating a tenant with the deleted tenant's slug: %v, want a conflict", err)
	}
	reuse := steps.TenantOf(saga.Spec{TenantID: c.id, Slug: "re-" + c.req.Slug, Name: "Reuse", Plan: "starter", Model: c.model})
	if _, err := e.reg.Create(ctx, reuse); !errors.Is(err, registry.ErrExists) {
		t.Errorf("registering a tenant with the deleted tenant's id: %v, want it taken", err)
	}
	if _, err := p.Retry(ctx, c.id); !errors.Is(err, provisioner.ErrConflict) {
		t.Errorf("retrying a deleted tenant: %v, want a conflict", err)
	}
}

// newLimiter is the rate limiter the sidecars run, counting in store.
func newLimiter(t testing.TB, e *env, store ratelimit.Store) *ratelimit.Limiter {
	t.Helper()
	lim, err := ratelimit.New(ratelimit.Config{
		Store: store, Plans: config.DefaultPlans(), Timeout: 5 * time.Second, Log: testLogger(t),
		Tenants: ratelimit.LookupFunc(func(id string) (*tenant.Tenant, bool) {
			tn, err := e.reg.Get(context.Background(), id)
			return &tn, err == nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return lim
}

// hitCounters sends the tenant's requests through the limiter, as Envoy would, so that it has
// counters to purge.
func hitCounters(t testing.TB, lim *ratelimit.Limiter, id string) {
	t.Helper()
	req := &rlsv3.RateLimitRequest{Domain: ratelimit.DefaultDomain, Descriptors: []*ratelimitv3.RateLimitDescriptor{{
		Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "tenant_id", Value: id}},
	}}}
	for range 3 {
		resp, err := lim.ShouldRateLimit(context.Background(), req)
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("rate-limit request: %v %v", resp, err)
		}
	}
}

// counters counts the tenant's keys in the Redis store (its counters and their index).
func counters(t testing.TB, rd *testenv.Redis, id string) int {
	t.Helper()
	keys, err := rd.Client.Keys(context.Background(), rd.Prefix+"{"+id+"}:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// journal is a saga's event log, for a failure message.
func journal(t testing.TB, e *env, st *saga.Status) string {
	t.Helper()
	if st == nil {
		return "(no saga)"
	}
	rows, err := e.db.Query(context.Background(), `SELECT step || ' ' || action || ' ' || event || ' ' || attempt || ' ' || coalesce(error, '')
		FROM `+saga.Schema+`.saga_events WHERE saga_id = $1 ORDER BY id`, st.ID)
	if err != nil {
		return err.Error()
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err.Error()
	}
	return "journal:\n" + strings.Join(lines, "\n")
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	panic("no " + v)
}
