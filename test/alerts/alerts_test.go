package alerts

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"go.yaml.in/yaml/v3"
)

const runbookPrefix = "https://github.com/tenantgate/tenantgate/blob/main/docs/operations.md#"

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// rules parses content with Prometheus's rule parser (what promtool check rules runs) and returns
// the alerting rules by name.
func rules(t *testing.T, content []byte) map[string]rulefmt.Rule {
	t.Helper()
	groups, errs := rulefmt.Parse(content, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("rules do not parse: %v", errors.Join(errs...))
	}
	out := map[string]rulefmt.Rule{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if _, dup := out[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			out[r.Alert] = r
		}
	}
	return out
}

// shippedRules are the alerts of files/alerts.yaml.
func shippedRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "charts", "tenantgate", "files", "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return rules(t, data)
}

// renderedRules renders the chart's PrometheusRule with helm and parses its spec (every alert the
// chart ships, the templated ones included), for release "t" in namespace "default".
func renderedRules(t *testing.T) map[string]rulefmt.Rule {
	t.Helper()
	out := helmTemplate(t, "metrics.prometheusRule.enabled=true", "templates/prometheusrule.yaml")
	var doc struct {
		Spec yaml.Node `yaml:"spec"`
	}
	if err := yaml.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	spec, err := yaml.Marshal(&doc.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return rules(t, spec)
}

// helmTemplate renders one template of the chart for release "t" with set turned on.
func helmTemplate(t *testing.T, set, template string) []byte {
	t.Helper()
	helm, err := exec.LookPath("helm")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("helm not found (make helm installs it)")
		}
		t.Skip("helm not found (make helm installs it)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, helm, "template", "t", filepath.Join(repoRoot(), "charts", "tenantgate"),
		"--set", "database.existingSecret=tenantgate-db", "--set", set, "--show-only", template).Output()
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return out
}

// anchors are the GitHub anchors of docs/operations.md's headings.
func anchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	out := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

// TestAlerts_EveryAlertLinksARunbookThatExists: each alert's runbook_url points into
// docs/operations.md at a section named after the alert.
func TestAlerts_EveryAlertLinksARunbookThatExists(t *testing.T) {
	have := anchors(t)
	check := func(t *testing.T, all map[string]rulefmt.Rule) {
		for name, r := range all {
			url := r.Annotations["runbook_url"]
			if want := runbookPrefix + strings.ToLower(name); url != want {
				t.Errorf("%s: runbook_url %q, want %q", name, url, want)
				continue
			}
			if !have[strings.ToLower(name)] {
				t.Errorf("%s: docs/operations.md has no section %q", name, name)
			}
			for _, a := range []string{"summary", "description"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s", name, a)
				}
			}
			if r.Labels["severity"] == "" {
				t.Errorf("%s: no severity", name)
			}
		}
	}
	t.Run("files/alerts.yaml", func(t *testing.T) { check(t, shippedRules(t)) })
	t.Run("rendered PrometheusRule", func(t *testing.T) {
		rendered := renderedRules(t)
		for name := range shippedRules(t) {
			if _, ok := rendered[name]; !ok {
				t.Errorf("the chart does not serve %s", name)
			}
		}
		check(t, rendered)
	})
}

// alertCase is one alert's expression evaluated on synthetic series: at the end of load it must
// fire with the firing labels, and stay quiet on the healthy series.
type alertCase struct {
	firing  string            // promqltest load block (series at 1m steps) showing the problem
	labels  map[string]string // labels the firing alert must carry
	healthy string            // the same part behaving
	at      time.Duration     // evaluation time (default 20m)
}

var shippedCases = map[string]alertCase{
	"TenantgateRateLimitFailOpen": {
		firing: `tenantgate_ratelimit_store_failures_total{failure_mode="open",namespace="tg",pod="sidecar-1"} 0+30x30
			tenantgate_ratelimit_store_failures_total{failure_mode="closed",namespace="tg",pod="sidecar-1"} 0x30`,
		labels: map[string]string{"pod": "sidecar-1", "namespace": "tg"},
		healthy: `tenantgate_ratelimit_store_failures_total{failure_mode="open",namespace="tg",pod="sidecar-1"} 4x30
			tenantgate_ratelimit_store_failures_total{failure_mode="closed",namespace="tg",pod="sidecar-1"} 0+30x30`,
	},
	"TenantgateRateLimitFailClosed": {
		firing:  `tenantgate_ratelimit_store_failures_total{failure_mode="closed",namespace="tg",pod="sidecar-2"} 0+30x30`,
		labels:  map[string]string{"pod": "sidecar-2"},
		healthy: `tenantgate_ratelimit_store_failures_total{failure_mode="open",namespace="tg",pod="sidecar-2"} 0+30x30`,
	},
	"TenantgateRateLimitStoreSlow": {
		firing: histogram("tenantgate_ratelimit_store_seconds", `namespace="tg",pod="sidecar-1"`,
			map[string]int{"0.001": 0, "0.01": 5, "0.025": 10, "0.05": 600, "+Inf": 600}),
		labels: map[string]string{"pod": "sidecar-1"},
		healthy: histogram("tenantgate_ratelimit_store_seconds", `namespace="tg",pod="sidecar-1"`,
			map[string]int{"0.001": 590, "0.01": 599, "0.025": 600, "0.05": 600, "+Inf": 600}),
	},
	"TenantgateCheckErrors": {
		firing: `tenantgate_authz_check_duration_seconds_count{decision="allowed",namespace="tg",pod="sidecar-1"} 0+1000x30
			tenantgate_authz_check_duration_seconds_count{decision="denied",namespace="tg",pod="sidecar-1"} 0+100x30
			tenantgate_authz_check_duration_seconds_count{decision="unavailable",namespace="tg",pod="sidecar-1"} 0+40x30`,
		labels: map[string]string{"pod": "sidecar-1"},
		// Denials are the service working: many of them are no error.
		healthy: `tenantgate_authz_check_duration_seconds_count{decision="allowed",namespace="tg",pod="sidecar-1"} 0+1000x30
			tenantgate_authz_check_duration_seconds_count{decision="denied",namespace="tg",pod="sidecar-1"} 0+900x30
			tenantgate_authz_check_duration_seconds_count{decision="unavailable",namespace="tg",pod="sidecar-1"} 0+2x30`,
	},
	"TenantgateCheckSlow": {
		firing: histogram("tenantgate_authz_check_duration_seconds", `namespace="tg",pod="sidecar-1"`,
			map[string]int{"0.001": 100, "0.05": 200, "0.1": 1000, "+Inf": 1000}),
		labels: map[string]string{"pod": "sidecar-1"},
		healthy: histogram("tenantgate_authz_check_duration_seconds", `namespace="tg",pod="sidecar-1"`,
			map[string]int{"0.001": 995, "0.05": 1000, "0.1": 1000, "+Inf": 1000}),
	},
	"TenantgateJWKSStale": {
		firing: `tenantgate_authz_jwks_age_seconds{issuer="https://login.example.com",pod="sidecar-1"} 7300x20
			tenantgate_authz_jwks_refresh_interval_seconds{issuer="https://login.example.com",pod="sidecar-1"} 3600x20`,
		labels: map[string]string{"issuer": "https://login.example.com"},
		healthy: `tenantgate_authz_jwks_age_seconds{issuer="https://login.example.com",pod="sidecar-1"} 3500x20
			tenantgate_authz_jwks_refresh_interval_seconds{issuer="https://login.example.com",pod="sidecar-1"} 3600x20`,
	},
	"TenantgateXDSConfigBehind": {
		firing: `tenantgate_registry_snapshot_revision{pod="control-1"} 42x20
			tenantgate_xds_config_version{pod="control-1"} 40x20
			tenantgate_registry_snapshot_revision{pod="sidecar-1"} 42x20`,
		labels: map[string]string{"pod": "control-1"},
		healthy: `tenantgate_registry_snapshot_revision{pod="control-1"} 42x20
			tenantgate_xds_config_version{pod="control-1"} 42x20
			tenantgate_registry_snapshot_revision{pod="sidecar-1"} 42x20`,
	},
	"TenantgateChangeFeedLagging": {
		firing: histogram("tenantgate_registry_change_feed_lag_seconds", `namespace="tg",pod="sidecar-1"`,
			map[string]int{"0.1": 10, "5": 20, "10": 100, "+Inf": 100}),
		labels: map[string]string{"pod": "sidecar-1"},
		healthy: histogram("tenantgate_registry_change_feed_lag_seconds", `namespace="tg",pod="sidecar-1"`,
			map[string]int{"0.1": 99, "5": 100, "10": 100, "+Inf": 100}),
	},
	"TenantgateSagaStuck": {
		firing:  `tenantgate_provisioner_oldest_saga_age_seconds{namespace="tg",pod="control-1"} 600+60x20`,
		labels:  map[string]string{"namespace": "tg"},
		healthy: `tenantgate_provisioner_oldest_saga_age_seconds{namespace="tg",pod="control-1"} 0 30 60 0 10 0x15`,
	},
	"TenantgateSagasFailing": {
		firing: `tenantgate_provisioner_sagas_finished_total{kind="create",state="failed",namespace="tg",pod="control-1"} 0x10 1x10
			tenantgate_provisioner_sagas_finished_total{kind="create",state="done",namespace="tg",pod="control-1"} 0+1x20`,
		labels:  map[string]string{"kind": "create"},
		healthy: `tenantgate_provisioner_sagas_finished_total{kind="create",state="done",namespace="tg",pod="control-1"} 0+1x20`,
	},
	"TenantgateSagaStateUnreadable": {
		firing:  `tenantgate_provisioner_saga_scrape_ok{namespace="tg",pod="control-1"} 0x20`,
		labels:  map[string]string{"pod": "control-1"},
		healthy: `tenantgate_provisioner_saga_scrape_ok{namespace="tg",pod="control-1"} 1x20`,
	},
	"TenantgateTenantNearQuota": {
		firing: `kube_resourcequota{namespace="tenant-acme",resource="pods",resourcequota="compute",type="used"} 19x20
			kube_resourcequota{namespace="tenant-acme",resource="pods",resourcequota="compute",type="hard"} 20x20`,
		labels: map[string]string{"namespace": "tenant-acme", "resource": "pods"},
		// Only tenant namespaces count: a full kube-system is someone else's alert.
		healthy: `kube_resourcequota{namespace="tenant-acme",resource="pods",resourcequota="compute",type="used"} 5x20
			kube_resourcequota{namespace="tenant-acme",resource="pods",resourcequota="compute",type="hard"} 20x20
			kube_resourcequota{namespace="kube-system",resource="pods",resourcequota="compute",type="used"} 20x20
			kube_resourcequota{namespace="kube-system",resource="pods",resourcequota="compute",type="hard"} 20x20`,
	},
}

// The chart's templated alerts, as rendered for release "t" (jobs t-tenantgate-*) in "default".
var renderedCases = map[string]alertCase{
	"TenantgateDown": {
		firing:  `up{job="t-tenantgate-sidecar",pod="sidecar-1"} 0x20`,
		labels:  map[string]string{},
		healthy: `up{job="t-tenantgate-sidecar",pod="sidecar-1"} 1x20`,
	},
	"TenantgateTargetDown": {
		firing:  `up{job="t-tenantgate-controlplane",pod="control-1"} 1x10 0x10`,
		labels:  map[string]string{"pod": "control-1"},
		healthy: `up{job="t-tenantgate-controlplane",pod="control-1"} 1x20`,
	},
	"TenantgateXDSRejected": {
		firing:  `tenantgate_xds_nacks_total{job="t-tenantgate-controlplane",pod="control-1",type="Cluster"} 0+2x20`,
		labels:  map[string]string{"pod": "control-1"},
		healthy: `tenantgate_xds_nacks_total{job="t-tenantgate-controlplane",pod="control-1",type="Cluster"} 3x20`,
	},
	"TenantgateRateLimitStoreDown": {
		firing:  `tenantgate_ratelimit_store_breaker_open{job="t-tenantgate-sidecar",pod="sidecar-1"} 1x20`,
		labels:  map[string]string{"pod": "sidecar-1"},
		healthy: `tenantgate_ratelimit_store_breaker_open{job="t-tenantgate-sidecar",pod="sidecar-1"} 0x20`,
	},
	"TenantgatePodRestarting": {
		firing:  `kube_pod_container_status_restarts_total{namespace="default",container="tenantgate",pod="sidecar-1"} 0+1x20`,
		labels:  map[string]string{"pod": "sidecar-1"},
		healthy: `kube_pod_container_status_restarts_total{namespace="default",container="tenantgate",pod="sidecar-1"} 2x20`,
	},
}

// histogram writes a load block of cumulative bucket counters, each growing by its count per minute.
func histogram(name, labels string, perMinute map[string]int) string {
	les := make([]string, 0, len(perMinute))
	for le := range perMinute {
		les = append(les, le)
	}
	sort.Strings(les)
	var b strings.Builder
	for _, le := range les {
		b.WriteString(name + "_bucket{" + labels + `,le="` + le + `"} 0+` + strconv.Itoa(perMinute[le]) + "x30\n")
	}
	return b.String()
}

// eval runs expr at the case's time over the series and returns the result vector.
func eval(t *testing.T, series, expr string, at time.Duration) promql.Vector {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(series), "\n")
	for i := range lines {
		lines[i] = "  " + strings.TrimSpace(lines[i])
	}
	storage := promqltest.LoadedStorage(t, "load 1m\n"+strings.Join(lines, "\n"))
	engine := promqltest.NewTestEngine(t, false, 5*time.Minute, promqltest.DefaultMaxSamplesPerQuery)
	q, err := engine.NewInstantQuery(context.Background(), storage, nil, expr, time.Unix(0, 0).Add(at))
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("eval %s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		t.Fatalf("eval %s: %v", expr, err)
	}
	return v
}

func runCases(t *testing.T, all map[string]rulefmt.Rule, cases map[string]alertCase) {
	var names []string
	for name := range all {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			c, ok := cases[name]
			if !ok {
				t.Fatalf("no synthetic-series case for %s", name)
			}
			at := c.at
			if at == 0 {
				at = 20 * time.Minute
			}
			expr := all[name].Expr
			fired := eval(t, c.firing, expr, at)
			if len(fired) == 0 {
				t.Fatalf("did not fire on the problem series:\n%s", expr)
			}
			for k, want := range c.labels {
				if got := fired[0].Metric.Get(k); got != want {
					t.Errorf("fired with %s=%q, want %q (all: %s)", k, got, want, fired[0].Metric)
				}
			}
			if quiet := eval(t, c.healthy, expr, at); len(quiet) > 0 {
				t.Errorf("fired on healthy series: %v", quiet)
			}
		})
	}
	for name := range cases {
		if _, ok := all[name]; !ok {
			t.Errorf("case for %s, which is not an alert any more", name)
		}
	}
}

// TestAlerts_ExpressionsOnSyntheticSeries: every shipped alert fires on series showing its problem
// and stays quiet on healthy ones.
func TestAlerts_ExpressionsOnSyntheticSeries(t *testing.T) {
	runCases(t, shippedRules(t), shippedCases)
}

// TestAlerts_RenderedExpressionsOnSyntheticSeries: the same for the chart's templated alerts, as
// helm renders them.
func TestAlerts_RenderedExpressionsOnSyntheticSeries(t *testing.T) {
	rendered := renderedRules(t)
	for name := range shippedCases {
		delete(rendered, name)
	}
	runCases(t, rendered, renderedCases)
}
