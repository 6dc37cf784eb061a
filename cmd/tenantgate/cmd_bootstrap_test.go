package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tenantgate/tenantgate/internal/envoyvalidate"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestBootstrap_WritesADeeplyValidBootstrapForEachRoleAndFormat(t *testing.T) {
	tests := []struct {
		role, file, mustHave string
		extra                []string
	}{
		{"gateway", "gw.yaml", "api_type: DELTA_GRPC", nil},
		{"sidecar", "sc.json", `"api_type": "GRPC"`, []string{"--sotw"}},
		{"gateway", "gw-dns.yaml", "type: STRICT_DNS", []string{"--xds-address", "tenantgate-xds.tenantgate.svc:18000"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			args := append([]string{"bootstrap", "--role", tt.role, "--node-id", "envoy-1", "--cluster", "edge", "-o", path}, tt.extra...)
			if out, err := runCLI(t, args...); err != nil {
				t.Fatalf("bootstrap: %v\n%s", err, out)
			}
			if err := envoyvalidate.ValidateBootstrapFile(path); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := envoyvalidate.DecodeBootstrap(data)
			if err != nil {
				t.Fatal(err)
			}
			if b.GetNode().GetId() != "envoy-1" || b.GetNode().GetCluster() != "edge" {
				t.Errorf("node = %v", b.GetNode())
			}
			if a := b.GetAdmin().GetAddress().GetSocketAddress(); a.GetAddress() != "127.0.0.1" || a.GetPortValue() != 9901 {
				t.Errorf("admin = %v, want 127.0.0.1:9901", a)
			}
			if b.GetNode().GetMetadata().GetFields()["tenantgate_role"].GetStringValue() != tt.role {
				t.Errorf("role metadata = %v", b.GetNode().GetMetadata())
			}
			if !strings.Contains(string(data), tt.mustHave) {
				t.Errorf("bootstrap lacks %q:\n%s", tt.mustHave, data)
			}
		})
	}
}

func TestBootstrap_RejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown role", []string{"--role", "mesh"}, "role"},
		{"xds address without port", []string{"--xds-address", "xds"}, "xds address"},
		{"unknown format", []string{"--format", "toml"}, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCLI(t, append([]string{"bootstrap", "--node-id", "n"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one about %q", err, tt.want)
			}
		})
	}
}
