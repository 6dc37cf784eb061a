package provisioner

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
)

// createHold is how long a new creation saga waits for the API to register its tenant before a
// worker takes it anyway (the API died in between): see saga.Engine.Start.
const createHold = time.Minute

// Provisioner runs the tenant lifecycle: the operations of the API, and the saga workers.
type Provisioner struct {
	reg       registry.Registry
	db        *pgxpool.Pool
	cat       *steps.Catalog
	engine    *saga.Engine
	knownPlan func(string) bool
	log       *slog.Logger
}

// Options configure a Provisioner.
type Options struct {
	Registry registry.Registry
	// State is the database of the provisioner's schema (saga.Migrate must have run on it).
	State   *pgxpool.Pool
	Catalog *steps.Catalog
	// KnownPlan reports whether a plan is configured.
	KnownPlan func(string) bool
	Saga      saga.Options
	Logger    *slog.Logger
}

// New returns a Provisioner; Run starts its workers.
func New(o Options) (*Provisioner, error) {
	if o.Registry == nil || o.State == nil || o.Catalog == nil || o.KnownPlan == nil {
		return nil, errors.New("provisioner: registry, state database, catalog and plans are required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Saga.Logger == nil {
		o.Saga.Logger = o.Logger
	}
	engine, err := saga.New(o.State, o.Catalog, o.Saga)
	if err != nil {
		return nil, err
	}
	return &Provisioner{reg: o.Registry, db: o.State, cat: o.Catalog, engine: engine, knownPlan: o.KnownPlan, log: o.Logger}, nil
}

// IdempotencyKeyTTL is how long an Idempotency-Key is remembered.
const IdempotencyKeyTTL = 24 * time.Hour

// Run runs the saga workers until ctx ends, and forgets idempotency keys older than
// IdempotencyKeyTTL once an hour.
func (p *Provisioner) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			if _, err := p.db.Exec(ctx, `DELETE FROM `+saga.Schema+`.idempotency_keys WHERE created_at < now() - make_interval(secs => $1)`,
				IdempotencyKeyTTL.Seconds()); err != nil && ctx.Err() == nil {
				p.log.Warn("expired idempotency keys not removed", slog.Any("error", err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return p.engine.Run(ctx)
}

// Ping reports whether the provisioner's database answers.
func (p *Provisioner) Ping(ctx context.Context) error { return p.db.Ping(ctx) }

// CreateRequest is a new tenant, as the API takes it.
type CreateRequest struct {
	Name       string          `json:"name"`
	Slug       string          `json:"slug,omitempty"`
	Plan       string          `json:"plan"`
	Model      tenant.Model    `json:"model"`
	AdminEmail string          `json:"admin_email"`
	Upstream   tenant.Upstream `json:"upstream,omitzero"`
}

// View is a tenant with its latest saga.
type View struct {
	Tenant tenant.Tenant
	Saga   *saga.Status
}

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 255

// Create registers a new tenant in status pending and starts its creation saga. With an idempotency
// key, a request repeated with the same body returns the tenant the first one made (replayed is
// true), and one with another body fails with ErrIdempotencyMismatch.
func (p *Provisioner) Create(ctx context.Context, req CreateRequest, idempotencyKey string) (v View, replayed bool, err error) {
	spec, err := p.validate(req)
	if err != nil {
		return View{}, false, err
	}
	if len(idempotencyKey) > maxIdempotencyKey {
		return View{}, false, fieldErr("Idempotency-Key", "must be at most %d characters", maxIdempotencyKey)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return View{}, false, err
	}
	hash := sha256.Sum256(body)

	if _, err := p.reg.GetBySlug(ctx, spec.Slug); err == nil {
		if idempotencyKey != "" {
			if v, ok, err := p.replay(ctx, idempotencyKey, hash[:]); ok || err != nil {
				return v, ok, err
			}
		}
		return View{}, false, conflict("slug", "slug %q is taken", spec.Slug)
	} else if !errors.Is(err, registry.ErrNotFound) {
		return View{}, false, fmt.Errorf("registry: %w", err)
	}

	sagaID, err := p.startCreate(ctx, spec, idempotencyKey, hash[:])
	if errors.Is(err, errKeyUsed) {
		v, _, err := p.replay(ctx, idempotencyKey, hash[:])
		return v, true, err
	}
	if err != nil {
		return View{}, false, err
	}
	t, err := p.reg.Create(ctx, steps.TenantOf(spec))
	if err != nil {
		// The saga has not run: take it and the key back.
		if derr := p.discard(context.WithoutCancel(ctx), sagaID, idempotencyKey); derr != nil {
			p.log.Error("new tenant's saga left to run on its own", slog.String("tenant", spec.TenantID), slog.Any("error", derr))
		}
		if errors.Is(err, registry.ErrExists) {
			return View{}, false, conflict("slug", "slug %q is taken", spec.Slug)
		}
		return View{}, false, fmt.Errorf("registry: %w", err)
	}
	if err := p.engine.Release(ctx, sagaID); err != nil {
		p.log.Warn("saga will start after its hold", slog.String("tenant", t.ID), slog.Any("error", err))
	}
	v = View{Tenant: t}
	if st, err := p.engine.Latest(ctx, t.ID); err == nil {
		v.Saga = &st
	}
	return v, false, nil
}

var errKeyUsed = errors.New("idempotency key used")

// startCreate stores the idempotency key and the held creation saga in one transaction.
func (p *Provisioner) startCreate(ctx context.Context, spec saga.Spec, key string, hash []byte) (string, error) {
	tx, err := p.db.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if key != "" {
		tag, err := tx.Exec(ctx, `INSERT INTO `+saga.Schema+`.idempotency_keys (key, body_hash, tenant_id)
			VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING`, key, hash, spec.TenantID)
		if err != nil {
			return "", fmt.Errorf("store idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return "", errKeyUsed
		}
	}
	id, err := p.engine.Start(ctx, tx, saga.Create, spec, createHold)
	if err != nil {
		return "", err
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return id, nil
}

func (p *Provisioner) discard(ctx context.Context, sagaID, key string) error {
	if err := p.engine.Discard(ctx, sagaID); err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	_, err := p.db.Exec(ctx, `DELETE FROM `+saga.Schema+`.idempotency_keys WHERE key = $1`, key)
	return err
}

// replay answers a repeated idempotency key: ok is false when the key is unknown.
func (p *Provisioner) replay(ctx context.Context, key string, hash []byte) (View, bool, error) {
	var stored []byte
	var tenantID string
	err := p.db.QueryRow(ctx, `SELECT body_hash, tenant_id::text FROM `+saga.Schema+`.idempotency_keys WHERE key = $1`, key).
		Scan(&stored, &tenantID)
	if errors.Is(err, pgx.ErrNoRows) {
		return View{}, false, nil
	}
	if err != nil {
		return View{}, false, fmt.Errorf("read idempotency key: %w", err)
	}
	if subtle.ConstantTimeCompare(stored, hash) != 1 {
		return View{}, false, ErrIdempotencyMismatch
	}
	v, err := p.Get(ctx, tenantID)
	if errors.Is(err, ErrNotFound) {
		return View{}, false, conflict("", "the first request with this Idempotency-Key is still being handled; repeat it shortly")
	}
	return v, true, err
}

// validate checks a request against the tenant rules and the configuration, and makes its spec.
func (p *Provisioner) validate(req CreateRequest) (saga.Spec, error) {
	spec := saga.Spec{
		TenantID: tenant.NewID(), Slug: req.Slug, Name: strings.TrimSpace(req.Name), Plan: req.Plan, Model: req.Model,
		AdminEmail: req.AdminEmail, Upstream: req.Upstream,
	}
	if spec.Name == "" {
		return spec, fieldErr("name", "is required")
	}
	if spec.Slug == "" {
		spec.Slug = tenant.SlugFromName(spec.Name)
	}
	if req.Plan == "" {
		return spec, fieldErr("plan", "is required")
	}
	if !p.knownPlan(req.Plan) {
		return spec, fieldErr("plan", "unknown plan %q", req.Plan)
	}
	if req.Model == "" {
		return spec, fieldErr("model", "is required")
	}
	if !req.Model.Valid() {
		return spec, fieldErr("model", "must be one of silo, bridge, pool, namespace")
	}
	if err := p.cat.Supports(req.Model); err != nil {
		return spec, fieldErr("model", "%v", err)
	}
	if err := checkEmail(req.AdminEmail); err != nil {
		return spec, err
	}
	t := steps.TenantOf(spec)
	if err := t.Validate(); err != nil {
		var fe *tenant.FieldError
		if errors.As(err, &fe) {
			field := fe.Field
			if field == "slug" && req.Slug == "" {
				return spec, fieldErr("slug", "derived from the name as %q, which %s; give a slug", spec.Slug, fe.Reason)
			}
			return spec, fieldErr(field, "%s", fe.Reason)
		}
		return spec, err
	}
	return spec, nil
}

func checkEmail(s string) error {
	if s == "" {
		return fieldErr("admin_email", "is required")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || len(s) > 254 {
		return fieldErr("admin_email", "must be a plain email address such as owner@example.com")
	}
	return nil
}

// Get returns a tenant (tombstones included) with its latest saga.
func (p *Provisioner) Get(ctx context.Context, id string) (View, error) {
	if tenant.CheckID(id) != nil {
		return View{}, ErrNotFound
	}
	// The saga first: its steps write the registry before the saga records them, so a saga read as
	// finished is never shown with the tenant as it was before its last step.
	var v View
	st, err := p.engine.Latest(ctx, id)
	switch {
	case err == nil:
		v.Saga = &st
	case !errors.Is(err, saga.ErrNotFound):
		return View{}, err
	}
	t, err := p.reg.Get(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return View{}, ErrNotFound
	}
	if err != nil {
		return View{}, fmt.Errorf("registry: %w", err)
	}
	v.Tenant = t
	return v, nil
}

// List returns one page of tenants.
func (p *Provisioner) List(ctx context.Context, q registry.ListQuery) (registry.Page, error) {
	for _, s := range q.Status {
		if !s.Valid() {
			return registry.Page{}, fieldErr("status", "unknown status %q", s)
		}
	}
	if q.Model != "" && !q.Model.Valid() {
		return registry.Page{}, fieldErr("model", "must be one of silo, bridge, pool, namespace")
	}
	if q.Limit < 0 || q.Limit > registry.MaxPageSize {
		return registry.Page{}, fieldErr("limit", "must be 1 to %d", registry.MaxPageSize)
	}
	page, err := p.reg.List(ctx, q.Normalize())
	if err != nil {
		return registry.Page{}, fmt.Errorf("registry: %w", err)
	}
	return page, nil
}

// Suspend stops an active tenant's traffic at once (authorization and routing read the registry).
func (p *Provisioner) Suspend(ctx context.Context, id string) (View, error) {
	return p.transition(ctx, id, tenant.Active, tenant.Suspended)
}

// Resume lets a suspended tenant's traffic through again.
func (p *Provisioner) Resume(ctx context.Context, id string) (View, error) {
	return p.transition(ctx, id, tenant.Suspended, tenant.Active)
}

func (p *Provisioner) transition(ctx context.Context, id string, from, to tenant.Status) (View, error) {
	t, err := p.update(ctx, id, func(t *tenant.Tenant) (bool, error) {
		if t.Status == to {
			return false, nil
		}
		if t.Status != from {
			return false, conflict("status", "tenant is %s; only a %s tenant can become %s", t.Status, from, to)
		}
		t.Status = to
		return true, nil
	})
	if err != nil {
		return View{}, err
	}
	return p.Get(ctx, t.ID)
}

// ChangePlan moves a tenant to another plan; with Kubernetes on, an update saga applies the plan's
// compute budget. A change refused with a conflict has changed nothing.
//
// The registry's plan (which the rate limiter and authorization read) and the budget must end the
// same, whatever runs at once and wherever a process dies. The registry and the saga tables share no
// transaction (the registry is an interface over its own store), so the order of the writes does it:
//
//  1. The update saga starts first, carrying the plan. A tenant has one saga in flight at most: of
//     concurrent changes one starts, and the others are refused before they write anything.
//  2. The saga's first step stores its plan in the registry, and its kubernetes step then applies
//     the plan the registry holds. So the saga alone completes the change if this process dies
//     now, and no other change comes between its two steps.
//  3. This call stores the plan too, so that its answer shows it, but only if the tenant is still at
//     the revision read before step 1 (storePlan), never retrying: a store that lands found no write
//     since that read, so the saga's first step has not stored yet and its kubernetes step, and any
//     later saga, come after it. Storing on a newer revision could overwrite a later change after
//     its budget was applied.
func (p *Provisioner) ChangePlan(ctx context.Context, id, plan string) (View, error) {
	if plan == "" {
		return View{}, fieldErr("plan", "is required")
	}
	if !p.knownPlan(plan) {
		return View{}, fieldErr("plan", "unknown plan %q", plan)
	}
	if err := p.noSagaInFlight(ctx, id); err != nil {
		return View{}, err
	}
	setPlan := func(t *tenant.Tenant) (bool, error) {
		switch t.Status {
		case tenant.Active, tenant.Suspended, tenant.Failed:
		default:
			return false, conflict("status", "the plan of a %s tenant cannot change", t.Status)
		}
		if t.Plan == plan {
			return false, nil
		}
		t.Plan = plan
		return true, nil
	}
	t, err := p.tenant(ctx, id)
	if err != nil {
		return View{}, err
	}
	read := t
	changed, err := setPlan(&t)
	if err != nil {
		return View{}, err
	}
	if !changed {
		return p.Get(ctx, id)
	}
	// Without Kubernetes there is no budget to apply. A failed tenant's budget is not resized: a
	// retried creation's kubernetes step applies the plan the registry holds then, and a retried
	// deletion removes the budget.
	if !p.cat.HasUpdateSteps() || t.Status == tenant.Failed {
		if _, err := p.update(ctx, id, setPlan); err != nil {
			return View{}, err
		}
		return p.Get(ctx, id)
	}
	if err := p.start(ctx, saga.Update, specOf(t, "")); err != nil {
		return View{}, err
	}
	if err := p.storePlan(ctx, read, plan); err != nil {
		return View{}, err
	}
	return p.Get(ctx, id)
}

// storePlan stores plan for a tenant whose update saga has started, if the tenant is still at the
// revision of read (see ChangePlan). Otherwise the saga's first step stores it, unless a deletion
// cancelled the saga before it ran: then the change is refused, the registry never holding its plan.
// Any other error leaves the change to the saga.
func (p *Provisioner) storePlan(ctx context.Context, read tenant.Tenant, plan string) error {
	t := read
	t.Plan = plan
	_, err := p.reg.Update(ctx, t)
	if !errors.Is(err, registry.ErrConflict) {
		if err != nil {
			return fmt.Errorf("registry (the update saga stores the plan): %w", err)
		}
		return nil
	}
	now, err := p.tenant(ctx, read.ID)
	if err != nil {
		return err
	}
	if now.Plan != plan && (now.Status == tenant.Deleting || now.Status == tenant.Deleted) {
		return conflict("status", "the tenant is %s: the plan change gave way to the deletion", now.Status)
	}
	return nil
}

// Retry starts a failed tenant's saga again: a failed creation from the beginning (its compensation
// removed everything), a failed deletion from the beginning too (every deletion step is idempotent).
func (p *Provisioner) Retry(ctx context.Context, id string) (View, error) {
	v, err := p.Get(ctx, id)
	if err != nil {
		return View{}, err
	}
	if v.Saga != nil && v.Saga.State.InFlight() {
		return View{}, conflict("", "the tenant's %s saga is in flight", v.Saga.Kind)
	}
	t := v.Tenant
	var kind saga.Kind
	switch {
	case t.Status == tenant.Failed && v.Saga != nil && v.Saga.Kind == saga.Delete:
		kind = saga.Delete
	case t.Status == tenant.Failed || t.Status == tenant.Pending:
		kind = saga.Create
	default:
		return View{}, conflict("status", "a %s tenant has nothing to retry", t.Status)
	}
	email := ""
	if v.Saga != nil {
		email = v.Saga.Spec.AdminEmail
	}
	if kind == saga.Create && email == "" {
		return View{}, conflict("", "the tenant's creation request is not on record; delete it and create it again")
	}
	if err := p.start(ctx, kind, specOf(t, email)); err != nil {
		return View{}, err
	}
	return p.Get(ctx, id)
}

// Delete starts the deletion saga. The tenant is deleting at once, which authorization and routing
// refuse; the saga removes what creation made and leaves a tombstone. Deleting a deleted or deleting
// tenant changes nothing.
func (p *Provisioner) Delete(ctx context.Context, id string) (View, error) {
	v, err := p.Get(ctx, id)
	if err != nil {
		return View{}, err
	}
	t := v.Tenant
	if t.Status == tenant.Deleted || (t.Status == tenant.Deleting && v.Saga != nil && v.Saga.State.InFlight()) {
		return v, nil
	}
	if v.Saga != nil && v.Saga.State.InFlight() {
		// A plan change waiting for its turn gives way to the deletion; anything else must end first.
		if v.Saga.Kind != saga.Update || p.engine.Cancel(ctx, v.Saga.ID, "superseded by a deletion") != nil {
			return View{}, conflict("status", "the tenant's %s saga is in flight; delete the tenant when it ends", v.Saga.Kind)
		}
	}
	if err := p.start(ctx, saga.Delete, specOf(t, "")); err != nil {
		return View{}, err
	}
	if _, err := p.update(ctx, id, func(t *tenant.Tenant) (bool, error) {
		if t.Status == tenant.Deleting || t.Status == tenant.Deleted {
			return false, nil
		}
		t.Status = tenant.Deleting
		return true, nil
	}); err != nil {
		// The saga's first step sets it too.
		p.log.Warn("tenant not marked deleting yet", slog.String("tenant", id), slog.Any("error", err))
	}
	return p.Get(ctx, id)
}

func (p *Provisioner) start(ctx context.Context, k saga.Kind, spec saga.Spec) error {
	_, err := p.engine.Start(ctx, p.db, k, spec, 0)
	if errors.Is(err, saga.ErrInFlight) {
		return conflict("", "a saga is in flight for this tenant")
	}
	if err != nil {
		return err
	}
	p.engine.Wake()
	return nil
}

func (p *Provisioner) noSagaInFlight(ctx context.Context, id string) error {
	st, err := p.engine.Latest(ctx, id)
	if errors.Is(err, saga.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.State.InFlight() {
		return conflict("", "the tenant's %s saga is in flight", st.Kind)
	}
	return nil
}

// tenant reads a tenant from the registry.
func (p *Provisioner) tenant(ctx context.Context, id string) (tenant.Tenant, error) {
	if tenant.CheckID(id) != nil {
		return tenant.Tenant{}, ErrNotFound
	}
	t, err := p.reg.Get(ctx, id)
	if errors.Is(err, registry.ErrNotFound) {
		return tenant.Tenant{}, ErrNotFound
	}
	if err != nil {
		return tenant.Tenant{}, fmt.Errorf("registry: %w", err)
	}
	return t, nil
}

// update applies fn to the stored tenant and writes it, re-reading on a concurrent change.
func (p *Provisioner) update(ctx context.Context, id string, fn func(t *tenant.Tenant) (bool, error)) (tenant.Tenant, error) {
	for range 20 {
		t, err := p.tenant(ctx, id)
		if err != nil {
			return tenant.Tenant{}, err
		}
		changed, err := fn(&t)
		if err != nil || !changed {
			return t, err
		}
		t, err = p.reg.Update(ctx, t)
		if errors.Is(err, registry.ErrConflict) {
			continue
		}
		var te *tenant.TransitionError
		if errors.As(err, &te) {
			return tenant.Tenant{}, conflict("status", "%v", te)
		}
		if err != nil {
			return tenant.Tenant{}, fmt.Errorf("registry: %w", err)
		}
		return t, nil
	}
	return tenant.Tenant{}, conflict("", "the tenant keeps changing; try again")
}

func specOf(t tenant.Tenant, adminEmail string) saga.Spec {
	return saga.Spec{TenantID: t.ID, Slug: t.Slug, Name: t.Name, Plan: t.Plan, Model: t.Model, AdminEmail: adminEmail, Upstream: t.Upstream}
}
