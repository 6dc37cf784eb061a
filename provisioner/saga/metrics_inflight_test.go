package saga

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// twoSteps is a catalog of two steps that do nothing.
type twoSteps struct{}

type noopStep string

func (s noopStep) Name() string                   { return string(s) }
func (noopStep) Do(context.Context, *Run) error   { return nil }
func (noopStep) Undo(context.Context, *Run) error { return nil }
func (twoSteps) Plan(Kind, Spec) (Plan, error) {
	return Plan{Steps: []string{"database", "dns"}, Pivot: 1}, nil
}
func (twoSteps) Step(name string) (Step, bool) {
	return noopStep(name), name == "database" || name == "dns"
}
func (twoSteps) GaveUp(context.Context, *Run, string, error) error { return nil }

func gather(t *testing.T, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// TestInFlightCollector_ReportsSagasByStepAndTheOldestAge: a saga waiting at its first step is
// counted under its kind, state and step, and the oldest age follows its created_at; with nothing
// in flight the age is 0, and an unreachable database reports the scrape as failed.
func TestInFlightCollector_ReportsSagasByStepAndTheOldestAge(t *testing.T) {
	ctx := context.Background()
	url := testenv.Database(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := Migrate(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c := InFlightCollector(db)

	fams := gather(t, c)
	if got := fams["tenantgate_provisioner_oldest_saga_age_seconds"].GetMetric()[0].GetGauge().GetValue(); got != 0 {
		t.Errorf("oldest age with nothing in flight = %v, want 0", got)
	}
	if _, ok := fams["tenantgate_provisioner_sagas_in_flight"]; ok {
		t.Error("in-flight series with nothing in flight")
	}

	e, err := New(db, twoSteps{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{TenantID: tenant.NewID(), Slug: "acme", Name: "Acme", Plan: "free", Model: tenant.Pool, AdminEmail: "a@acme.example"}
	id, err := e.Start(ctx, db, Create, spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, `UPDATE `+Schema+`.sagas SET created_at = now() - interval '20 minutes' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}

	fams = gather(t, c)
	inFlight := fams["tenantgate_provisioner_sagas_in_flight"].GetMetric()
	if len(inFlight) != 1 {
		t.Fatalf("%d in-flight series, want 1", len(inFlight))
	}
	labels := map[string]string{}
	for _, l := range inFlight[0].GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["kind"] != "create" || labels["state"] != "running" || labels["step"] != "database" || inFlight[0].GetGauge().GetValue() != 1 {
		t.Errorf("in flight = %v %v, want create/running/database 1", labels, inFlight[0].GetGauge().GetValue())
	}
	if age := fams["tenantgate_provisioner_oldest_saga_age_seconds"].GetMetric()[0].GetGauge().GetValue(); age < 1190 || age > 1500 {
		t.Errorf("oldest age = %v, want about 1200", age)
	}
	if ok := fams["tenantgate_provisioner_saga_scrape_ok"].GetMetric()[0].GetGauge().GetValue(); ok != 1 {
		t.Errorf("scrape_ok = %v, want 1", ok)
	}

	db.Close()
	fams = gather(t, c)
	if ok := fams["tenantgate_provisioner_saga_scrape_ok"].GetMetric()[0].GetGauge().GetValue(); ok != 0 {
		t.Errorf("scrape_ok with the database closed = %v, want 0", ok)
	}
}
