package config

import (
	"errors"
	"strings"
	"testing"
)

// TestLoad_TelemetryOffByDefault: no traces are exported and no series carries a tenant id unless
// the file says so.
func TestLoad_TelemetryOffByDefault(t *testing.T) {
	cfg, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Telemetry.Tracing.Enabled() || cfg.Telemetry.Metrics.TopTenants != 0 {
		t.Fatalf("telemetry defaults = %+v, want tracing off and no per-tenant metrics", cfg.Telemetry)
	}
}

func TestLoad_TelemetrySection(t *testing.T) {
	p := writeConfig(t, `
telemetry:
  tracing:
    endpoint: otel-collector.observability:4317
    insecure: true
    sample_ratio: 0.25
    service_name: tenantgate-sidecar
    headers: {x-api-key: "s3cret-key"}
  metrics: {top_tenants: 20}
`)
	cfg, err := Load(p, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Telemetry.Tracing
	if !tr.Enabled() || !tr.Insecure || tr.SampleRatio != 0.25 || tr.ServiceName != "tenantgate-sidecar" || tr.Headers["x-api-key"].Value() != "s3cret-key" {
		t.Errorf("tracing = %+v", tr)
	}
	if cfg.Telemetry.Metrics.TopTenants != 20 {
		t.Errorf("top_tenants = %d", cfg.Telemetry.Metrics.TopTenants)
	}
	out, err := cfg.Redacted()
	if err != nil || strings.Contains(string(out), "s3cret-key") {
		t.Errorf("printed config leaks an exporter header: %v\n%s", err, out)
	}
}

// TestValidate_TelemetryMistakesNameTheirKey: every bad telemetry value stops start-up with its key.
func TestValidate_TelemetryMistakesNameTheirKey(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Telemetry)
		key    string
	}{
		{"ratio above 1", func(x *Telemetry) { x.Tracing.SampleRatio = 1.5 }, "telemetry.tracing.sample_ratio"},
		{"negative ratio", func(x *Telemetry) { x.Tracing.SampleRatio = -0.1 }, "telemetry.tracing.sample_ratio"},
		{"empty service name", func(x *Telemetry) { x.Tracing.ServiceName = " " }, "telemetry.tracing.service_name"},
		{"endpoint without port", func(x *Telemetry) { x.Tracing.Endpoint = "collector" }, "telemetry.tracing.endpoint"},
		{"endpoint of another scheme", func(x *Telemetry) { x.Tracing.Endpoint = "ftp://collector:4317" }, "telemetry.tracing.endpoint"},
		{"bad header name", func(x *Telemetry) { x.Tracing.Headers = map[string]Secret{"bad name": "v"} }, "telemetry.tracing.headers"},
		{"negative top tenants", func(x *Telemetry) { x.Metrics.TopTenants = -1 }, "telemetry.metrics.top_tenants"},
		{"unbounded top tenants", func(x *Telemetry) { x.Metrics.TopTenants = 100000 }, "telemetry.metrics.top_tenants"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.mutate(&cfg.Telemetry)
			err := cfg.Validate()
			var ke *KeyError
			if !errors.As(err, &ke) || ke.Key != c.key {
				t.Fatalf("Validate() = %v, want an error at %s", err, c.key)
			}
		})
	}
	for _, ok := range []string{"collector:4317", "https://otlp.example.com:443", "http://127.0.0.1:4317"} {
		cfg := Default()
		cfg.Telemetry.Tracing.Endpoint = ok
		if err := cfg.Validate(); err != nil {
			t.Errorf("endpoint %q refused: %v", ok, err)
		}
	}
}
