package alerts

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// TestDashboard_EveryQueryParsesAndUsesDocumentedSeries: each panel query of the Grafana dashboard
// is valid PromQL (Grafana's variables substituted) and reads only series docs/operations.md
// documents, so a renamed metric cannot leave a panel silently empty.
func TestDashboard_EveryQueryParsesAndUsesDocumentedSeries(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot(), "charts", "tenantgate", "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	if dash.UID == "" {
		t.Error("dashboard has no uid (Grafana would make a new one at each import)")
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m")
	p := parser.NewParser(parser.Options{})
	queries := 0
	for _, panel := range dash.Panels {
		if panel.Type == "row" {
			continue
		}
		if len(panel.Targets) == 0 {
			t.Errorf("panel %q has no query", panel.Title)
		}
		for _, target := range panel.Targets {
			queries++
			expr, err := p.ParseExpr(grafana.Replace(target.Expr))
			if err != nil {
				t.Errorf("panel %q: %v\n%s", panel.Title, err, target.Expr)
				continue
			}
			for _, vs := range parser.ExtractSelectors(expr) {
				for _, m := range vs {
					if m.Name != "__name__" {
						continue
					}
					name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m.Value, "_bucket"), "_count"), "_sum")
					if !strings.Contains(string(doc), "`"+name) {
						t.Errorf("panel %q reads %s, which docs/operations.md does not document", panel.Title, m.Value)
					}
				}
			}
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries: the dashboard lost its panels", queries)
	}
}

// TestDashboard_ChartServesItToGrafana: the chart's ConfigMap holds the dashboard unchanged, under
// the label Grafana's dashboard sidecar looks for.
func TestDashboard_ChartServesItToGrafana(t *testing.T) {
	out := helmTemplate(t, "metrics.grafanaDashboard.enabled=true", "templates/grafana-dashboard.yaml")
	var cm struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Labels map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(out, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Labels["grafana_dashboard"] != "1" {
		t.Fatalf("rendered %s with labels %v, want a ConfigMap labelled grafana_dashboard=1", cm.Kind, cm.Metadata.Labels)
	}
	file, err := os.ReadFile(filepath.Join(repoRoot(), "charts", "tenantgate", "files", "dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var served, shipped any
	if err := json.Unmarshal([]byte(cm.Data["tenantgate.json"]), &served); err != nil {
		t.Fatalf("served dashboard is not JSON: %v", err)
	}
	_ = json.Unmarshal(file, &shipped)
	if !reflect.DeepEqual(served, shipped) {
		t.Error("the served dashboard differs from files/dashboard.json")
	}
}
