package provisioner_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

func request(model tenant.Model, slug string) provisioner.CreateRequest {
	return provisioner.CreateRequest{Name: "Acme " + slug, Slug: slug, Plan: "starter", Model: model,
		AdminEmail: "owner@" + slug + ".example"}
}

// want is what a tenant of each model has once active.
func wantActive(e *env, model tenant.Model, slug string) inventory {
	ns := "tenant-" + slug
	inv := inventory{
		Kube: []string{
			"LimitRange " + ns + "/tenant-defaults",
			"Namespace " + ns,
			"NetworkPolicy " + ns + "/tenant-isolation",
			"ResourceQuota " + ns + "/tenant-class-tenant-batch",
			"ResourceQuota " + ns + "/tenant-class-tenant-critical",
			"ResourceQuota " + ns + "/tenant-total",
			"ResourceQuota " + ns + "/tenant-unclassified",
		},
		DNS:    []string{"CNAME " + slug + ".tenants.test gateway.tenants.test"},
		Emails: 1,
	}
	under := strings.ReplaceAll(slug, "-", "_")
	switch model {
	case tenant.Pool:
		inv.PoolRows = 2
	case tenant.Namespace:
		inv.Schemas = []string{e.prefix + under}
	case tenant.Bridge:
		inv.Databases = []string{e.prefix + under}
	case tenant.Silo:
		inv.Databases = []string{e.prefix + "silo_" + slug}
	}
	return inv
}

func sameInventory(got, want inventory) bool {
	return slices.Equal(got.Databases, want.Databases) && slices.Equal(got.Schemas, want.Schemas) &&
		got.PoolRows == want.PoolRows && slices.Equal(sortedCopy(got.Kube), sortedCopy(want.Kube)) &&
		slices.Equal(got.DNS, want.DNS) && got.Emails == want.Emails
}

func TestCreate_EachModelMakesExactlyWhatItShouldAndMailsOnce(t *testing.T) {
	eachModel(t, func(t *testing.T, model tenant.Model) {
		{
			e := newEnv(t)
			p := e.start(t, provOpts{})
			ctx := context.Background()
			slug := "acme-" + string(model)
			req := request(model, slug)
			v, replayed, err := p.Create(ctx, req, "")
			if err != nil || replayed {
				t.Fatalf("create: %v (replayed %v)", err, replayed)
			}
			if v.Tenant.Status != tenant.Pending || v.Tenant.Slug != slug {
				t.Fatalf("created tenant: %+v", v.Tenant)
			}
			v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second)
			if v.Tenant.Status != tenant.Active || v.Saga.State != saga.Done {
				t.Fatalf("tenant %s, saga %+v", v.Tenant.Status, v.Saga)
			}
			got := e.inventory(t, v.Tenant, req.AdminEmail)
			if want := wantActive(e, model, slug); !sameInventory(got, want) {
				t.Fatalf("after creation:\n got %s\nwant %s", describe(got), describe(want))
			}
			res := v.Tenant.Resources
			if res.Namespace != "tenant-"+slug || res.Domain != slug+".tenants.test" || res.Database == "" || res.Schema == "" {
				t.Errorf("registry resources: %+v", res)
			}

			// The tenant's tables, and for pool tenants their row-level security.
			if got, want := e.tenantTables(t, v.Tenant), []string{"goose_db_version", "tenant_profile", "users"}; !slices.Equal(got, want) {
				t.Errorf("tenant tables %v, want %v", got, want)
			}

			// The email carries the one-time token whose hash is stored with the owner.
			mails := e.smtp.to(req.AdminEmail)
			token := invitationToken(t, mails[0])
			if !strings.Contains(mails[0].data, "Subject: Welcome to Acme "+slug) {
				t.Errorf("email subject missing:\n%s", mails[0].data)
			}
			if n := e.ownerWithToken(t, v.Tenant, req.AdminEmail, sha(token)); n != 1 {
				t.Errorf("owner rows with the emailed invitation's hash: %d, want 1", n)
			}

			// Deletion removes everything creation made, purges counters, keeps a tombstone.
			if _, err := p.Delete(ctx, v.Tenant.ID); err != nil {
				t.Fatal(err)
			}
			v = waitSettled(t, p.Provisioner, v.Tenant.ID, 20*time.Second)
			if v.Tenant.Status != tenant.Deleted || v.Saga.Kind != saga.Delete || v.Saga.State != saga.Done {
				t.Fatalf("after delete: tenant %s, saga %+v", v.Tenant.Status, v.Saga)
			}
			got = e.inventory(t, v.Tenant, req.AdminEmail)
			got.Emails = 0 // an email cannot be taken back
			if !got.empty() {
				t.Fatalf("after deletion: %s", describe(got))
			}
			if !e.purger.has(v.Tenant.ID) {
				t.Error("rate-limit counters not purged")
			}
			if _, _, err := p.Create(ctx, req, ""); !errors.Is(err, provisioner.ErrConflict) {
				t.Errorf("creating a tenant with a deleted tenant's slug: %v, want a conflict", err)
			}
		}
	})
}

// eachModel runs fn for every tenancy model at once, each in its own subtest. The subtests mostly
// wait (on Postgres, leases, polling), so they run side by side whatever -parallel says.
func eachModel(t *testing.T, fn func(t *testing.T, model tenant.Model)) {
	var wg sync.WaitGroup
	for _, model := range tenant.Models {
		wg.Go(func() {
			t.Run(string(model), func(t *testing.T) { fn(t, model) })
		})
	}
	wg.Wait()
}

// ownerWithToken counts the owner rows whose invitation hash is hash.
func (e *env) ownerWithToken(t testing.TB, tn tenant.Tenant, email string, hash []byte) int {
	t.Helper()
	ctx := context.Background()
	var q string
	var n int
	switch tn.Model {
	case tenant.Pool:
		q = "tenant_pool.users"
	case tenant.Namespace:
		q = tn.Resources.Schema + ".users"
	default:
		url := strings.Replace(e.url, e.url[strings.LastIndex(e.url, "/")+1:], tn.Resources.Database, 1)
		conn := must[*pgxConn](t)(connect(ctx, url))
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM public.users WHERE tenant_id = $1 AND email = $2 AND role = 'owner'
			AND invitation_hash = $3 AND invitation_expires_at > now()`, tn.ID, email, hash).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if err := e.db.QueryRow(ctx, `SELECT count(*) FROM `+q+` WHERE tenant_id = $1 AND email = $2 AND role = 'owner'
		AND invitation_hash = $3 AND invitation_expires_at > now()`, tn.ID, email, hash).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// createSteps are the steps of a creation, in order, with every optional step on.
var createSteps = []string{steps.RegistryProvisioning, steps.Database, steps.Migrations, steps.Kubernetes,
	steps.DNS, steps.AdminUser, steps.RegistryActive, steps.WelcomeEmail}

// TestFaults_EveryStepFailingOrKilledEndsWholeOrEmpty injects, at every creation step of every model,
// first a failure (the step did its work, then reports an error on every attempt), then separately a
// crash (the process dies right after the step's work, before it is recorded, and a new provisioner
// takes over), and a crash right after the step is recorded as started, before its work. Each run
// ends active with everything made or failed with nothing left.
func TestFaults_EveryStepFailingOrKilledEndsWholeOrEmpty(t *testing.T) {
	eachModel(t, func(t *testing.T, model tenant.Model) {
		// The two groups of faults run side by side, each on a database of its own: the runs mostly
		// wait for leases to run out. (More groups would take more of the server's connections than
		// the tests of other packages can spare.)
		groups := [][]string{{"kill"}, {"fail", "kill-before"}}
		envs := make([]*env, len(groups))
		for g := range groups {
			envs[g] = newEnv(t)
		}
		var wg sync.WaitGroup
		for g, faults := range groups {
			wg.Go(func() {
				for i, step := range createSteps {
					for _, fault := range faults {
						slug := fmt.Sprintf("f%d-%s-%s", i, fault, model)
						t.Run(step+"/"+fault, func(t *testing.T) {
							runFault(t, envs[g], model, slug, step, fault)
						})
					}
				}
			})
		}
		wg.Wait()
	})
}

func runFault(t *testing.T, e *env, model tenant.Model, slug, step, fault string) {
	ctx := context.Background()
	req := request(model, slug)
	var victim *running
	killed := make(chan struct{})
	phase := saga.After // the step's work is done, and not yet recorded
	if fault == "kill-before" {
		phase = saga.Before // the step is recorded as started, its work not begun
	}
	hook := func(ctx context.Context, ev saga.Event) error {
		if ev.Kind != saga.Create || ev.Step != step || ev.Action != saga.DoAction || ev.Phase != phase {
			return nil
		}
		if fault == "fail" {
			return errInjected
		}
		select {
		case <-killed:
			return nil
		default:
		}
		close(killed)
		go victim.stop() // the process dies: its context ends mid-step, nothing more is written
		<-ctx.Done()
		return ctx.Err()
	}
	lease := 2 * time.Second
	if fault != "fail" {
		lease = time.Second // what the new provisioner waits for
	}
	victim = e.start(t, provOpts{hook: hook, lease: lease})
	v, _, err := victim.Create(ctx, req, "")
	if err != nil {
		t.Fatal(err)
	}
	p := victim.Provisioner
	if fault != "fail" {
		select {
		case <-killed:
		case <-time.After(20 * time.Second):
			t.Fatal("the step never ran")
		}
		victim.stop()
		p = e.start(t, provOpts{lease: time.Second}).Provisioner
	}
	v = waitSettled(t, p, v.Tenant.ID, 30*time.Second)
	got := e.inventory(t, v.Tenant, req.AdminEmail)
	switch v.Tenant.Status {
	case tenant.Active:
		if want := wantActive(e, model, slug); !sameInventory(got, want) {
			t.Fatalf("active, but:\n got %s\nwant %s", describe(got), describe(want))
		}
	case tenant.Failed:
		if !got.empty() {
			t.Fatalf("failed, but left behind: %s", describe(got))
		}
		if !strings.Contains(v.Tenant.LastError, step) {
			t.Errorf("last error %q does not name the step", v.Tenant.LastError)
		}
	default:
		t.Fatalf("ended %s (saga %+v)\n%s", v.Tenant.Status, v.Saga, journal(t, e, v.Saga))
	}
	// What must happen: a failing compensable step fails the tenant; a crash is resumed to the end;
	// a failing email (after the tenant is active) leaves it active.
	wantStatus := tenant.Active
	if fault == "fail" && step != steps.WelcomeEmail {
		wantStatus = tenant.Failed
	}
	if v.Tenant.Status != wantStatus {
		t.Errorf("status %s, want %s", v.Tenant.Status, wantStatus)
	}
}

// TestFaults_KilledWhileCompensatingEndsEmpty fails the admin-user step for good, and kills the
// process right after the undo of an earlier step (its work done, not recorded); a new provisioner
// finishes the compensation and nothing is left.
func TestFaults_KilledWhileCompensatingEndsEmpty(t *testing.T) {
	for _, undo := range []string{steps.DNS, steps.Kubernetes, steps.Database, steps.RegistryProvisioning} {
		t.Run(undo, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			req := request(tenant.Bridge, "undo-"+strings.ReplaceAll(undo, "-", ""))
			var victim *running
			killed := make(chan struct{})
			var once sync.Once
			hook := func(ctx context.Context, ev saga.Event) error {
				if ev.Step == steps.AdminUser && ev.Action == saga.DoAction {
					return errInjected
				}
				if ev.Step != undo || ev.Action != saga.UndoAction || ev.Phase != saga.After {
					return nil
				}
				fired := false
				once.Do(func() { fired = true; close(killed) })
				if !fired {
					return nil
				}
				go victim.stop()
				<-ctx.Done()
				return ctx.Err()
			}
			victim = e.start(t, provOpts{hook: hook, lease: time.Second})
			v, _, err := victim.Create(ctx, req, "")
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-killed:
			case <-time.After(20 * time.Second):
				t.Fatal("the undo never ran")
			}
			victim.stop()
			next := e.start(t, provOpts{hook: hook, lease: time.Second})
			v = waitSettled(t, next.Provisioner, v.Tenant.ID, 30*time.Second)
			if v.Tenant.Status != tenant.Failed || v.Saga.State != saga.Failed {
				t.Fatalf("ended %s, saga %+v", v.Tenant.Status, v.Saga)
			}
			if inv := e.inventory(t, v.Tenant, req.AdminEmail); !inv.empty() {
				t.Fatalf("left behind: %s", describe(inv))
			}
		})
	}
}

// tenantTables lists the tables where the tenant's data lives; for the pool schema, only tables
// with row-level security enabled and forced and a policy are listed.
func (e *env) tenantTables(t testing.TB, tn tenant.Tenant) []string {
	t.Helper()
	ctx := context.Background()
	q := `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relkind = 'r' AND ($2 = false OR c.relname = 'goose_db_version'
			OR (c.relrowsecurity AND c.relforcerowsecurity AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)))
		ORDER BY 1`
	var db querier = e.db
	if tn.Model == tenant.Bridge || tn.Model == tenant.Silo {
		conn := must[*pgxConn](t)(connect(ctx, strings.Replace(e.url, e.url[strings.LastIndex(e.url, "/")+1:], tn.Resources.Database, 1)))
		defer conn.Close(ctx)
		db = conn
	}
	return queryStrings(t, db, q, tn.Resources.Schema, tn.Model == tenant.Pool)
}
