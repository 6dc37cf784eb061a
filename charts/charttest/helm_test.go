package charttest

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
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/tenantgate/tenantgate/internal/testenv"
)

// chartDir is charts/tenantgate, next to this package.
func chartDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "tenantgate")
}

// runHelm runs helm with its own config, cache and data directories, so a developer's repositories
// and plugins change nothing, and returns stdout.
func runHelm(t testing.TB, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	bin := testenv.Helm(t)
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	if kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+kubeconfig)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// valueSet is one realistic way to install the chart.
type valueSet struct {
	name string
	sets []string
}

func (v valueSet) args() []string {
	out := make([]string, 0, 2*len(v.sets))
	for _, s := range v.sets {
		out = append(out, "--set", s)
	}
	return out
}

// required is what every install must say: the Secret holding the Postgres URL.
const required = "database.existingSecret=tenantgate-db"

var valueSets = []valueSet{
	{name: "defaults", sets: []string{required}},
	{name: "external-redis-cluster", sets: []string{required,
		"redis.existingSecret=tenantgate-redis", "redis.key=url", "redis.cluster=true"}},
	{name: "ha-control-plane", sets: []string{required, "redis.existingSecret=tenantgate-redis",
		"controlPlane.replicas=3", "controlPlane.autoscaling.enabled=true", "controlPlane.autoscaling.minReplicas=3",
		"gateway.autoscaling.enabled=true", "metrics.serviceMonitor.enabled=true", "metrics.prometheusRule.enabled=true",
		"controlPlane.dnsEndpoints.enabled=true", "controlPlane.priorityClassName=system-cluster-critical"}},
	{name: "no-gateway", sets: []string{required, "redis.existingSecret=tenantgate-redis",
		"gateway.enabled=false", "sidecar.standalone.enabled=true",
		"networkPolicy.extraEnvoyPeers[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=envoy-gateway"}},
}

// render runs helm template and decodes every object.
func render(t testing.TB, release, namespace string, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", "1.37.2"}, extra...)
	out, err := runHelm(t, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("decode rendered manifests: %v", err)
	}
	if len(objs) == 0 {
		t.Fatal("helm template rendered no objects")
	}
	return objs
}

func decodeAll(manifests string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// find returns the rendered object of that kind and name, or nil.
func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

func kinds(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}
