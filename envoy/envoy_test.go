package envoy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/envoyvalidate"
	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// dir is envoy/, the directory of this file.
func dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

func repoRoot() string { return filepath.Dir(dir()) }

// TestConfigFiles_PassDeepValidation: every Envoy config shipped in envoy/ decodes strictly into a
// Bootstrap and passes deep validation.
func TestConfigFiles_PassDeepValidation(t *testing.T) {
	files := configFiles(t)
	for _, want := range []string{"gateway.yaml", "sidecar.yaml"} {
		if !slices.ContainsFunc(files, func(f string) bool { return filepath.Base(f) == want }) {
			t.Errorf("envoy/%s is missing", want)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := envoyvalidate.ValidateBootstrapFile(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func configFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml", "*.json"} {
		m, err := filepath.Glob(filepath.Join(dir(), pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

// TestGeneratedBootstraps_PassDeepValidation runs the real `tenantgate bootstrap` for every role,
// both ADS flavours and both output formats, and validates what it writes.
func TestGeneratedBootstraps_PassDeepValidation(t *testing.T) {
	bin := buildTenantgate(t)
	out := t.TempDir()
	for _, role := range []string{"gateway", "sidecar"} {
		for _, flavour := range []string{"delta", "sotw"} {
			for _, format := range []string{"yaml", "json"} {
				name := fmt.Sprintf("%s-%s.%s", role, flavour, format)
				t.Run(name, func(t *testing.T) {
					path := filepath.Join(out, name)
					args := []string{"bootstrap", "--role", role, "--node-id", role + "-1", "--xds-address", "tenantgate-xds.tenantgate.svc:18000", "-o", path}
					if flavour == "sotw" {
						args = append(args, "--sotw")
					}
					cmd := exec.Command(bin, args...)
					cmd.Dir = repoRoot()
					if msg, err := cmd.CombinedOutput(); err != nil {
						t.Fatalf("tenantgate %s: %v\n%s", strings.Join(args, " "), err, msg)
					}
					if err := envoyvalidate.ValidateBootstrapFile(path); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

// buildTenantgate builds the binary once per test into a temporary directory.
func buildTenantgate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tenantgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tenantgate")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestChartEnvoyConfigs_PassDeepValidation renders the Helm chart in the ways it is installed and
// validates every Envoy config found in its ConfigMaps.
func TestChartEnvoyConfigs_PassDeepValidation(t *testing.T) {
	helm := testenv.Helm(t)
	renders := map[string][]string{
		"defaults":   {"--set", "database.existingSecret=tenantgate-db"},
		"ha":         {"--set", "database.existingSecret=tenantgate-db", "--set", "redis.existingSecret=tenantgate-redis", "--set", "controlPlane.replicas=3", "--set", "gateway.autoscaling.enabled=true"},
		"no-gateway": {"--set", "database.existingSecret=tenantgate-db", "--set", "gateway.enabled=false", "--set", "sidecar.standalone.enabled=true"},
	}
	found := 0
	for name, sets := range renders {
		manifests := helmTemplate(t, helm, sets...)
		configs, err := chartEnvoyConfigs(manifests)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for key, data := range configs {
			found++
			t.Run(name+"/"+key, func(t *testing.T) {
				if err := validateData(data); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	if found == 0 {
		t.Fatal("the chart renders no Envoy config; the extraction no longer recognises it")
	}
}

// helmTemplate renders the chart with Helm's config, cache and data in a temporary home.
func helmTemplate(t *testing.T, helm string, sets ...string) []byte {
	t.Helper()
	home := t.TempDir()
	args := append([]string{"template", "tg", filepath.Join(repoRoot(), "charts", "tenantgate"), "--namespace", "tenantgate", "--kube-version", "1.37.2"}, sets...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home+"/config", "HELM_CACHE_HOME="+home+"/cache", "HELM_DATA_HOME="+home+"/data")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// envoyTopLevel are bootstrap fields; a YAML or JSON document with any of them at its top is an
// Envoy config (tenantgate's own config has none of them).
var envoyTopLevel = []string{"static_resources", "dynamic_resources", "admin", "node", "overload_manager", "layered_runtime"}

// chartEnvoyConfigs returns every Envoy config held in a ConfigMap of the manifests, keyed
// "<configmap>/<key>".
func chartEnvoyConfigs(manifests []byte) (map[string][]byte, error) {
	out := map[string][]byte{}
	dec := yaml.NewDecoder(bytes.NewReader(manifests))
	for {
		var obj struct {
			Kind     string `yaml:"kind"`
			Metadata struct{ Name string }
			Data     map[string]string `yaml:"data"`
		}
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("decode manifests: %w", err)
		}
		if obj.Kind != "ConfigMap" {
			continue
		}
		for key, data := range obj.Data {
			if !isEnvoyConfig(key, data) {
				continue
			}
			out[obj.Metadata.Name+"/"+key] = []byte(data)
		}
	}
}

func isEnvoyConfig(key, data string) bool {
	if ext := filepath.Ext(key); ext != ".yaml" && ext != ".yml" && ext != ".json" {
		return false
	}
	var top map[string]any
	if yaml.Unmarshal([]byte(data), &top) != nil {
		return false
	}
	for _, k := range envoyTopLevel {
		if _, ok := top[k]; ok {
			return true
		}
	}
	return false
}

// validateData is ValidateBootstrapFile on bytes.
func validateData(data []byte) error {
	b, err := envoyvalidate.DecodeBootstrap(data)
	if err != nil {
		return err
	}
	return envoyvalidate.ValidateMessage(b)
}

// TestBrokenFixtures_AreRejected: a deliberately broken config of each kind is rejected, each for
// the reason it was broken (so the validator did look where the problem is).
func TestBrokenFixtures_AreRejected(t *testing.T) {
	tests := []struct {
		name string
		file string
		want string
	}{
		{"static config with an invalid filter two typed_configs deep", "broken-static.yaml", "TargetSpecifier"},
		{"generated bootstrap with an admin port out of range", "broken-bootstrap.yaml", "PortValue"},
		{"generated bootstrap with a misspelt field", "broken-bootstrap-typo.json", "conect_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := envoyvalidate.ValidateBootstrapFile(filepath.Join(dir(), "testdata", tt.file))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want a rejection mentioning %q", err, tt.want)
			}
		})
	}
	t.Run("chart ConfigMap with an invalid cluster", func(t *testing.T) {
		manifest, err := os.ReadFile(filepath.Join(dir(), "testdata", "broken-chart-configmap.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		configs, err := chartEnvoyConfigs(manifest)
		if err != nil {
			t.Fatal(err)
		}
		data, ok := configs["broken-tenantgate-envoy/bootstrap.yaml"]
		if !ok {
			t.Fatalf("the extraction did not find the Envoy config in the ConfigMap (found %d)", len(configs))
		}
		if err := validateData(data); err == nil || !strings.Contains(err.Error(), "ConnectTimeout") {
			t.Fatalf("err = %v, want a rejection mentioning ConnectTimeout", err)
		}
	})
}

// TestGateway_UsesTheControlPlanesScopes: gateway.yaml's static listener keys scopes exactly as the
// listener tenantgate serves does, under the same scoped-routes name, and names its HTTP filters as
// the tenant routes' per-filter configs expect, so the scopes and routes served over ADS fit it.
func TestGateway_UsesTheControlPlanesScopes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(dir(), "gateway.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoyvalidate.DecodeBootstrap(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.GetStaticResources().GetListeners()) != 1 {
		t.Fatalf("want one static listener, got %d", len(b.GetStaticResources().GetListeners()))
	}
	got := hcmOf(t, b.GetStaticResources().GetListeners()[0])
	cfg := config.Default()
	want := hcmOf(t, envoybuild.ParamsFrom(&cfg).Listener())

	if !proto.Equal(got.GetScopedRoutes().GetScopeKeyBuilder(), want.GetScopedRoutes().GetScopeKeyBuilder()) {
		t.Errorf("scope key builder differs from the served listener's:\n got %v\nwant %v", got.GetScopedRoutes().GetScopeKeyBuilder(), want.GetScopedRoutes().GetScopeKeyBuilder())
	}
	if got.GetScopedRoutes().GetName() != want.GetScopedRoutes().GetName() {
		t.Errorf("scoped routes name = %q, want %q", got.GetScopedRoutes().GetName(), want.GetScopedRoutes().GetName())
	}
	if got.GetScopedRoutes().GetScopedRds().GetScopedRdsConfigSource().GetAds() == nil || got.GetScopedRoutes().GetRdsConfigSource().GetAds() == nil {
		t.Error("scopes and route configurations must come over ADS")
	}
	if b.GetDynamicResources().GetCdsConfig().GetAds() == nil || b.GetDynamicResources().GetAdsConfig() == nil {
		t.Error("clusters must come over ADS")
	}
	var gotFilters, wantFilters []string
	for _, f := range got.GetHttpFilters() {
		gotFilters = append(gotFilters, f.GetName())
	}
	for _, f := range want.GetHttpFilters() {
		wantFilters = append(wantFilters, f.GetName())
	}
	if !slices.Equal(gotFilters, wantFilters) {
		t.Errorf("http filters = %v, want %v (tenant routes key their per-filter config on these names)", gotFilters, wantFilters)
	}
	statics := map[string]bool{}
	for _, c := range b.GetStaticResources().GetClusters() {
		statics[c.GetName()] = true
	}
	served := envoybuild.ParamsFrom(&cfg).Static().Clusters
	for _, c := range served {
		if statics[c.GetName()] {
			t.Errorf("static cluster %s is also served over CDS; Envoy refuses to replace a static cluster", c.GetName())
		}
	}
}

func hcmOf(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			var h hcmv3.HttpConnectionManager
			if f.GetTypedConfig().UnmarshalTo(&h) == nil {
				return &h
			}
		}
	}
	t.Fatalf("listener %s has no HTTP connection manager", l.GetName())
	return nil
}
