package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/envoyvalidate"
)

const (
	release   = "tg"
	namespace = "tenantgate"
	fullname  = "tg-tenantgate"
)

var clusterScoped = map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true, "PriorityClass": true}

func TestLint_EveryValueSetIsClean(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			args := append([]string{"lint", chartDir(t), "--strict", "--namespace", namespace}, vs.args()...)
			if out, err := runHelm(t, "", args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

func TestTemplate_RefusesBadValues(t *testing.T) {
	tests := []struct {
		name string
		sets []string
		want string // in helm's error
	}{
		{"no database secret", nil, "database.existingSecret is required"},
		{"unknown top-level value", []string{required, "replicas=3"}, "additional properties 'replicas' not allowed"},
		{"listen addresses are the chart's", []string{required, "config.listen.grpc=:1"}, "config"},
		{"sidecar runs only its components", []string{required, "gateway.sidecar.components={xds}"}, "components"},
		{"image pull policy", []string{required, "image.pullPolicy=Sometimes"}, "pullPolicy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", "1.37.2"}
			for _, s := range tt.sets {
				args = append(args, "--set", s)
			}
			_, err := runHelm(t, "", args...)
			if err == nil {
				t.Fatalf("helm template accepted %v", tt.sets)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error does not mention %q:\n%v", tt.want, err)
			}
		})
	}
}

// Every value set renders objects that hold the chart's promises: tenantgate's config loads, the Envoy
// bootstrap passes deep validation, every pod is locked down and probed, URLs come from Secrets.
func TestTemplate_EveryValueSetKeepsThePromises(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			objs := render(t, release, namespace, vs.args()...)
			checkConfigLoads(t, objs, vs)
			checkPods(t, objs)
			if b := find(objs, "ConfigMap", fullname+"-envoy"); b != nil {
				checkBootstrap(t, b)
			}
			for _, o := range objs {
				if !clusterScoped[o.GetKind()] && o.GetNamespace() != namespace {
					t.Errorf("%s %s is in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), namespace)
				}
			}
		})
	}
}

func TestTemplate_ValueSets(t *testing.T) {
	objs := map[string][]*unstructured.Unstructured{}
	for _, vs := range valueSets {
		objs[vs.name] = render(t, release, namespace, vs.args()...)
	}
	t.Run("defaults: two control plane replicas with a PDB, gateway with Envoy and sidecar", func(t *testing.T) {
		o := objs["defaults"]
		cp := deployment(t, o, fullname+"-controlplane")
		if cp.Spec.Replicas == nil || *cp.Spec.Replicas != 2 {
			t.Errorf("control plane replicas = %v, want 2", cp.Spec.Replicas)
		}
		if got := argOf(cp.Spec.Template.Spec.Containers[0], "--components="); got != "xds,provisioner" {
			t.Errorf("control plane components = %q", got)
		}
		gw := deployment(t, o, fullname+"-gateway")
		names := containerNames(gw)
		if !slices.Equal(names, []string{"envoy", "tenantgate"}) {
			t.Errorf("gateway containers = %v, want envoy and tenantgate", names)
		}
		if got := argOf(gw.Spec.Template.Spec.Containers[1], "--components="); got != "authz,ratelimit" {
			t.Errorf("sidecar components = %q", got)
		}
		for _, name := range []string{fullname + "-controlplane", fullname + "-gateway"} {
			if find(o, "PodDisruptionBudget", name) == nil {
				t.Errorf("no PodDisruptionBudget %s", name)
			}
		}
		if len(kinds(o, "HorizontalPodAutoscaler")) != 0 || len(kinds(o, "ServiceMonitor")) != 0 {
			t.Error("autoscalers or ServiceMonitors rendered without being asked for")
		}
		if env := envNames(gw.Spec.Template.Spec.Containers[1]); slices.Contains(env, "TENANTGATE_REDIS_URL") {
			t.Error("TENANTGATE_REDIS_URL set without redis.existingSecret")
		}
		checkServicePorts(t, o, fullname+"-controlplane", map[string]int32{"grpc": 9001, "xds": 18000, "http": 8080, "admin": 9090})
		checkServicePorts(t, o, fullname+"-sidecar", map[string]int32{"grpc": 9001, "admin": 9090})
		checkRBAC(t, o)
		if find(o, "Pod", fullname+"-test-grpc-health") == nil {
			t.Error("no helm test pod")
		}
	})
	t.Run("external Redis Cluster: URL from its Secret, cluster mode in the config", func(t *testing.T) {
		o := objs["external-redis-cluster"]
		gw := deployment(t, o, fullname+"-gateway")
		ref := secretRef(gw.Spec.Template.Spec.Containers[1], "TENANTGATE_REDIS_URL")
		if ref == nil || ref.Name != "tenantgate-redis" || ref.Key != "url" {
			t.Errorf("TENANTGATE_REDIS_URL from %+v, want Secret tenantgate-redis key url", ref)
		}
		cfg := loadConfig(t, o, "redis://redis-0.redis:6379")
		if !cfg.RateLimit.Redis.Cluster {
			t.Error("ratelimit.redis.cluster is not set")
		}
	})
	t.Run("HA control plane: autoscaled, spread, monitored", func(t *testing.T) {
		o := objs["ha-control-plane"]
		cp := deployment(t, o, fullname+"-controlplane")
		if cp.Spec.Replicas != nil {
			t.Errorf("replicas = %d set while the HPA owns them", *cp.Spec.Replicas)
		}
		if len(cp.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
			t.Error("control plane pods are not spread")
		}
		if cp.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" {
			t.Errorf("priorityClassName = %q", cp.Spec.Template.Spec.PriorityClassName)
		}
		for _, name := range []string{fullname + "-controlplane", fullname + "-gateway"} {
			if find(o, "HorizontalPodAutoscaler", name) == nil {
				t.Errorf("no HorizontalPodAutoscaler %s", name)
			}
		}
		if len(kinds(o, "ServiceMonitor")) != 2 || len(kinds(o, "PrometheusRule")) != 1 {
			t.Errorf("ServiceMonitors %d (want 2), PrometheusRules %d (want 1)", len(kinds(o, "ServiceMonitor")), len(kinds(o, "PrometheusRule")))
		}
		if find(o, "Role", fullname+"-dnsendpoints") == nil {
			t.Error("no Role for DNSEndpoints although controlPlane.dnsEndpoints.enabled")
		}
		cfg := loadConfig(t, o, "")
		if cfg.Provisioner.DNS.Provider != config.DNSExternalDNS || cfg.Provisioner.DNS.Namespace != namespace {
			t.Errorf("dns provider %q namespace %q, want external-dns in %s", cfg.Provisioner.DNS.Provider, cfg.Provisioner.DNS.Namespace, namespace)
		}
	})
	t.Run("no gateway: a standalone sidecar for an existing Envoy, no Envoy", func(t *testing.T) {
		o := objs["no-gateway"]
		if find(o, "Deployment", fullname+"-gateway") != nil || find(o, "ConfigMap", fullname+"-envoy") != nil || find(o, "Service", fullname+"-gateway") != nil {
			t.Error("gateway objects rendered with gateway.enabled=false")
		}
		sc := deployment(t, o, fullname+"-sidecar")
		if got := argOf(sc.Spec.Template.Spec.Containers[0], "--components="); got != "authz,ratelimit" {
			t.Errorf("sidecar components = %q", got)
		}
		svc := find(o, "Service", fullname+"-sidecar")
		if svc == nil {
			t.Fatal("no sidecar Service for the existing Envoy")
		}
		sel, _, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
		if sel["app.kubernetes.io/component"] != "sidecar" {
			t.Errorf("sidecar Service selects %v", sel)
		}
		np := find(o, "NetworkPolicy", fullname+"-sidecar")
		if np == nil || !strings.Contains(fmt.Sprint(np.Object["spec"]), "envoy-gateway") {
			t.Error("the sidecar's NetworkPolicy does not admit networkPolicy.extraEnvoyPeers")
		}
	})
}

func checkConfigLoads(t *testing.T, objs []*unstructured.Unstructured, vs valueSet) {
	t.Helper()
	redis := ""
	if slices.ContainsFunc(vs.sets, func(s string) bool { return strings.HasPrefix(s, "redis.existingSecret=") }) {
		redis = "redis://redis.cache.svc:6379/0"
	}
	loadConfig(t, objs, redis)
}

// loadConfig loads the rendered config file the way `tenantgate serve` does, with the URLs the
// Secrets would give.
func loadConfig(t *testing.T, objs []*unstructured.Unstructured, redisURL string) config.Config {
	t.Helper()
	cm := find(objs, "ConfigMap", fullname+"-config")
	if cm == nil {
		t.Fatal("no config ConfigMap")
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "config.yaml")
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TENANTGATE_DATABASE_URL": "postgres://tenantgate@db:5432/tenantgate", "TENANTGATE_REDIS_URL": redisURL}
	cfg, err := config.Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("tenantgate rejects the rendered config: %v\n%s", err, data)
	}
	if cfg.Listen.GRPC != ":9001" || cfg.Listen.XDS != ":18000" || cfg.Listen.HTTP != ":8080" || cfg.Listen.Admin != ":9090" {
		t.Errorf("listen addresses %+v do not match the Services", cfg.Listen)
	}
	if cfg.Provisioner.Kubernetes.Enabled != config.KubernetesOn {
		t.Errorf("provisioner.kubernetes.enabled = %q, want true in a cluster", cfg.Provisioner.Kubernetes.Enabled)
	}
	return cfg
}

func checkBootstrap(t *testing.T, cm *unstructured.Unstructured) {
	t.Helper()
	data, _, _ := unstructured.NestedString(cm.Object, "data", "bootstrap.yaml")
	b, err := envoyvalidate.DecodeBootstrap([]byte(data))
	if err != nil {
		t.Fatalf("bootstrap does not decode: %v\n%s", err, data)
	}
	if err := envoyvalidate.ValidateMessage(b); err != nil {
		t.Fatalf("bootstrap fails deep validation: %v", err)
	}
	if b.GetDynamicResources().GetAdsConfig() == nil || b.GetDynamicResources().GetLdsConfig().GetAds() == nil || b.GetDynamicResources().GetCdsConfig().GetAds() == nil {
		t.Error("bootstrap does not take listeners and clusters over ADS")
	}
	if addr := b.GetAdmin().GetAddress().GetSocketAddress().GetAddress(); addr != "127.0.0.1" {
		t.Errorf("Envoy admin listens on %q, want loopback only", addr)
	}
	xds := b.GetStaticResources().GetClusters()
	found := false
	for _, c := range xds {
		for _, ep := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range ep.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				if sa.GetAddress() == fullname+"-controlplane."+namespace+".svc" && sa.GetPortValue() == 18000 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Error("no bootstrap cluster reaches the control plane Service on 18000")
	}
}

// checkPods: every pod template runs as non-root with a read-only root filesystem, no privilege
// escalation and no capabilities; tenantgate containers are probed on /healthz and /readyz at 9090 and
// read their URLs from Secrets.
func checkPods(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		var spec corev1.PodSpec
		switch o.GetKind() {
		case "Deployment":
			var d appsv1.Deployment
			fromUnstructured(t, o, &d)
			spec = d.Spec.Template.Spec
		case "Pod":
			var p corev1.Pod
			fromUnstructured(t, o, &p)
			spec = p.Spec
		default:
			continue
		}
		where := o.GetKind() + " " + o.GetName()
		if sc := spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.SeccompProfile == nil {
			t.Errorf("%s: pod security context %+v lacks runAsNonRoot and a seccomp profile", where, sc)
		}
		for _, c := range spec.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("%s/%s: container security context %+v is not locked down", where, c.Name, sc)
			}
			if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
				t.Errorf("%s/%s: no memory limit or CPU request", where, c.Name)
			}
			if c.Name != "tenantgate" {
				continue
			}
			if p := c.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.String() != "admin" {
				t.Errorf("%s/%s: liveness probe %+v, want GET /healthz on admin", where, c.Name, p)
			}
			if p := c.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.String() != "admin" {
				t.Errorf("%s/%s: readiness probe %+v, want GET /readyz on admin", where, c.Name, p)
			}
			if port := containerPort(c, "admin"); port != 9090 {
				t.Errorf("%s/%s: admin port %d, want 9090", where, c.Name, port)
			}
			if ref := secretRef(c, "TENANTGATE_DATABASE_URL"); ref == nil || ref.Name != "tenantgate-db" {
				t.Errorf("%s/%s: TENANTGATE_DATABASE_URL not from Secret tenantgate-db: %+v", where, c.Name, ref)
			}
			for _, e := range c.Env {
				if strings.HasPrefix(e.Name, "TENANTGATE_") && e.Value != "" {
					t.Errorf("%s/%s: %s is a literal value, not a Secret reference", where, c.Name, e.Name)
				}
			}
		}
	}
}

// checkRBAC: the provisioner may touch exactly the kinds its Kubernetes step makes, never Secrets,
// Pods or RBAC itself, and never with a wildcard.
func checkRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	cr := find(objs, "ClusterRole", fullname+"-provisioner")
	if cr == nil {
		t.Fatal("no provisioner ClusterRole")
	}
	var role rbacv1.ClusterRole
	fromUnstructured(t, cr, &role)
	allowed := map[string]bool{"namespaces": true, "resourcequotas": true, "limitranges": true, "networkpolicies": true, "priorityclasses": true}
	seen := map[string]bool{}
	for _, r := range role.Rules {
		for _, res := range r.Resources {
			if !allowed[res] {
				t.Errorf("provisioner may touch %s", res)
			}
			seen[res] = true
		}
		for _, v := range append(append(r.Verbs, r.APIGroups...), r.Resources...) {
			if v == "*" {
				t.Errorf("wildcard in rule %+v", r)
			}
		}
		if slices.Contains(r.Verbs, "escalate") || slices.Contains(r.Verbs, "bind") || slices.Contains(r.Verbs, "impersonate") {
			t.Errorf("rule %+v grants escalation", r)
		}
	}
	for res := range allowed {
		if !seen[res] {
			t.Errorf("provisioner may not touch %s, which its Kubernetes step needs", res)
		}
	}
}

func checkServicePorts(t *testing.T, objs []*unstructured.Unstructured, name string, want map[string]int32) {
	t.Helper()
	o := find(objs, "Service", name)
	if o == nil {
		t.Errorf("no Service %s", name)
		return
	}
	var svc corev1.Service
	fromUnstructured(t, o, &svc)
	got := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = p.Port
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Service %s ports %v, want %v", name, got, want)
	}
}

func deployment(t *testing.T, objs []*unstructured.Unstructured, name string) *appsv1.Deployment {
	t.Helper()
	o := find(objs, "Deployment", name)
	if o == nil {
		t.Fatalf("no Deployment %s", name)
	}
	var d appsv1.Deployment
	fromUnstructured(t, o, &d)
	return &d
}

func fromUnstructured(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, into); err != nil {
		t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
	}
}

func containerNames(d *appsv1.Deployment) []string {
	var out []string
	for _, c := range d.Spec.Template.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

func argOf(c corev1.Container, prefix string) string {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, prefix); ok {
			return v
		}
	}
	return ""
}

func envNames(c corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		out = append(out, e.Name)
	}
	return out
}

func secretRef(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

func containerPort(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}
