package charttest

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tenantgate/tenantgate/internal/envoyvalidate"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// The gateway's bootstrap is what `tenantgate bootstrap --role gateway` writes for the release (same
// builder, same parameters), plus only the chart's health listener and the admin cluster behind it.
func TestBootstrap_IsWhatTenantgateBootstrapWrites(t *testing.T) {
	objs := render(t, release, namespace, "--set", required)
	cm := find(objs, "ConfigMap", fullname+"-envoy")
	if cm == nil {
		t.Fatal("no Envoy bootstrap ConfigMap")
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "bootstrap.yaml")
	got, err := envoyvalidate.DecodeBootstrap([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	got.StaticResources.Listeners = slices.DeleteFunc(got.StaticResources.Listeners, func(l *listenerv3.Listener) bool { return l.GetName() == "envoy_health" })
	got.StaticResources.Clusters = slices.DeleteFunc(got.StaticResources.Clusters, func(c *clusterv3.Cluster) bool { return c.GetName() == "envoy_admin" })
	want, err := envoybuild.Bootstrap(envoybuild.BootstrapParams{
		Role:       envoybuild.Gateway,
		NodeID:     fullname + "-gateway",
		Cluster:    "tenantgate",
		XDSAddress: fullname + "-controlplane." + namespace + ".svc:18000",
		AdminPort:  9901,
		Delta:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("the chart's bootstrap differs from `tenantgate bootstrap`:\nchart: %s\n want: %s",
			protojson.Format(got), protojson.Format(want))
	}
}
