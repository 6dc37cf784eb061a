package envoyvalidate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func pack(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// listenerWith wraps an HTTP filter config in an HCM in a listener: typed_config inside typed_config.
func listenerWith(t *testing.T, hcm *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name: "l",
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: pack(t, hcm)},
		}}}},
	}
}

func validHCM(t *testing.T, authz *extauthzv3.ExtAuthz) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix:     "s",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r"}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.ext_authz",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: pack(t, authz)},
		}},
	}
}

func TestValidateMessage_FindsProblemsAtAnyDepth(t *testing.T) {
	tests := []struct {
		name string
		msg  func(t *testing.T) proto.Message
		want string // empty: valid
	}{
		{"valid nested config", func(t *testing.T) proto.Message {
			return listenerWith(t, validHCM(t, &extauthzv3.ExtAuthz{}))
		}, ""},
		{"invalid hcm inside listener typed_config", func(t *testing.T) proto.Message {
			h := validHCM(t, &extauthzv3.ExtAuthz{})
			h.StatPrefix = ""
			return listenerWith(t, h)
		}, "StatPrefix"},
		{"invalid ext_authz inside hcm inside listener", func(t *testing.T) proto.Message {
			return listenerWith(t, validHCM(t, &extauthzv3.ExtAuthz{
				Services: &extauthzv3.ExtAuthz_GrpcService{GrpcService: &corev3.GrpcService{}},
			}))
		}, "TargetSpecifier"},
		{"unknown type in Any", func(t *testing.T) proto.Message {
			l := listenerWith(t, validHCM(t, &extauthzv3.ExtAuthz{}))
			l.FilterChains[0].Filters[0].GetTypedConfig().TypeUrl = "type.googleapis.com/no.such.Type"
			return l
		}, "unknown type"},
		{"garbage bytes in Any", func(t *testing.T) proto.Message {
			l := listenerWith(t, validHCM(t, &extauthzv3.ExtAuthz{}))
			l.FilterChains[0].Filters[0].GetTypedConfig().Value = []byte{0xff, 0xff, 0xff}
			return l
		}, "unpack"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateMessage(tt.msg(t))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid message rejected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestValidateBootstrapFile(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"valid yaml", `
node: {id: n1, cluster: c1}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]
`, ""},
		{"unknown field", "node: {id: n1, clusterr: c1}\n", "clusterr"},
		{"invalid nested value", `
static_resources:
  clusters:
  - name: ""
`, "Name"},
		{"invalid typed_config", `
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 0.0.0.0, port_value: 1}}
    filter_chains:
    - filters:
      - name: hcm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ""
          rds: {route_config_name: r}
`, "StatPrefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bootstrap.yaml")
			if err := os.WriteFile(p, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			err := ValidateBootstrapFile(p)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid bootstrap rejected: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}
