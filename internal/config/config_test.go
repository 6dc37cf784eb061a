package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tenantgate.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func noEnv(string) string { return "" }

func TestDefault_IsValidAndHasTheDesignPlans(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	want := map[string]int64{"free": 100, "starter": 1000, "professional": 10000, "enterprise": 100000}
	for name, limit := range want {
		p, ok := cfg.Plans[name]
		if !ok || len(p.Windows) != 1 || p.Windows[0].Limit != limit || p.Windows[0].Period.D() != time.Hour {
			t.Errorf("plan %s = %+v, want %d per hour", name, p, limit)
		}
	}
	if cfg.Listen.GRPC != ":9001" || cfg.Listen.XDS != ":18000" || cfg.Listen.HTTP != ":8080" || cfg.Listen.Admin != ":9090" {
		t.Errorf("listen defaults: %+v", cfg.Listen)
	}
}

func TestLoad_FileOverDefaultsAndEnvironment(t *testing.T) {
	p := writeConfig(t, `
listen:
  grpc: 127.0.0.1:19001
base_domain: example.test
log: {level: debug, format: json}
plans:
  basic:
    windows:
      - {limit: 10, period: 1s}
      - {limit: 1000, period: 1h}
    endpoints:
      search: [{limit: 2, period: 1s}]
    failure_mode: closed
  trial:
    windows: [{limit: 5, period: 500ms}]
`)
	env := map[string]string{
		"TENANTGATE_DATABASE_URL": "postgres://app:hunter2@db:5432/tg",
		"TENANTGATE_REDIS_URL":    "redis://:s3cret@cache:6379/0",
	}
	cfg, err := Load(p, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen.GRPC != "127.0.0.1:19001" || cfg.Listen.Admin != ":9090" {
		t.Errorf("listen = %+v: the file should override one address and keep the other defaults", cfg.Listen)
	}
	if len(cfg.Plans) != 2 || cfg.KnownPlan("free") {
		t.Errorf("plans = %v: a file that lists plans gets exactly those", cfg.Plans)
	}
	if got := cfg.Plans["basic"].Endpoints["search"][0]; got.Limit != 2 || got.Period.D() != time.Second {
		t.Errorf("endpoint override = %+v", got)
	}
	if cfg.Plans["trial"].FailureMode != "open" {
		t.Errorf("failure_mode default = %q, want open", cfg.Plans["trial"].FailureMode)
	}
	if cfg.DatabaseURL.Value() != env["TENANTGATE_DATABASE_URL"] || cfg.RedisURL.Value() != env["TENANTGATE_REDIS_URL"] {
		t.Error("environment URLs not applied")
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2", "s3cret"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("printed config leaks %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "db:5432") {
		t.Errorf("printed config lost the shape of the URL:\n%s", out)
	}
}

func TestLoad_MistakesNameTheKey(t *testing.T) {
	tests := []struct {
		name, body, key, reason string
	}{
		{"unknown top-level key", "bogus: 1\n", "bogus", "unknown key"},
		{"unknown nested key", "listen:\n  grcp: :1\n", "listen.grcp", "unknown key"},
		{"bad duration", "plans:\n  free:\n    windows: [{limit: 1, period: 1hour}]\n", "plans.free.windows[0].period", "invalid duration"},
		{"wrong type", "plans:\n  free:\n    windows: [{limit: lots, period: 1h}]\n", "plans.free.windows[0].limit", "cannot unmarshal"},
		{"non-positive limit", "plans:\n  free:\n    windows: [{limit: 0, period: 1h}]\n", "plans.free.windows[0].limit", "positive"},
		{"plan without windows", "plans:\n  free: {failure_mode: open}\n", "plans.free.windows", "at least one window"},
		{"bad failure mode", "plans:\n  free:\n    windows: [{limit: 1, period: 1h}]\n    failure_mode: maybe\n", "plans.free.failure_mode", "open or closed"},
		{"bad listen address", "listen:\n  admin: nine-oh-nine-oh\n", "listen.admin", "host:port"},
		{"unknown component", "components: [authz, billing]\n", "components[1]", "unknown component"},
		{"bad log level", "log: {level: loud}\n", "log.level", "debug, info"},
		{"bad database url", "database_url: mysql://db/x\n", "database_url", "postgres"},
		{"list where a mapping belongs", "listen: [a, b]\n", "listen", "mapping"},
		{"no plans", "plans: {}\n", "plans", "at least one plan"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectKeyError(t, tt.body, tt.key, tt.reason) })
	}
}

// expectKeyError loads a config file with body and checks that it fails with a *KeyError naming key,
// for a reason that contains reason, and that the message names the key too.
func expectKeyError(t *testing.T, body, key, reason string) {
	t.Helper()
	_, err := Load(writeConfig(t, body), noEnv)
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Fatalf("Load: %v, want a *KeyError", err)
	}
	if ke.Key != key || !strings.Contains(ke.Reason, reason) {
		t.Errorf("Load: key %q reason %q, want key %q reason containing %q", ke.Key, ke.Reason, key, reason)
	}
	if !strings.Contains(err.Error(), key) {
		t.Errorf("message %q does not name the key", err)
	}
}

func TestLoad_MissingFileAndInvalidYAML(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml"), noEnv); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := Load(writeConfig(t, "listen: {grpc: [\n"), noEnv); err == nil || !strings.Contains(err.Error(), "YAML") {
		t.Errorf("invalid YAML: %v", err)
	}
	cfg, err := Load(writeConfig(t, ""), noEnv)
	if err != nil || len(cfg.Plans) != 4 {
		t.Errorf("empty file should give the defaults: %v", err)
	}
}

func TestSecret_NeverPrints(t *testing.T) {
	tests := map[Secret]string{
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:REDACTED@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=pw":             "postgres://u@h/db?password=REDACTED",
		"plain-secret-value":                        "REDACTED",
		"":                                          "",
	}
	for s, want := range tests {
		if got := s.String(); got != want {
			t.Errorf("Secret(%q).String() = %q, want %q", string(s), got, want)
		}
	}
}
