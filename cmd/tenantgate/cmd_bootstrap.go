package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

type bootstrapFlags struct {
	configPath string
	role       string
	nodeID     string
	cluster    string
	xdsAddress string
	adminPort  uint32
	sotw       bool
	format     string
	out        string
}

func newBootstrapCmd() *cobra.Command {
	var f bootstrapFlags
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Write an Envoy bootstrap that takes its config over ADS from tenantgate",
		Long: "Writes an Envoy bootstrap for a gateway or a sidecar Envoy: ADS over gRPC to the tenantgate xDS\n" +
			"server, the node id and cluster, and the admin interface on 127.0.0.1 only.",
		Example: "  tenantgate bootstrap --role gateway --node-id gw-1 --xds-address tenantgate-xds:18000 -o envoy.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBootstrap(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "tenantgate config file whose xds.node section gives the defaults")
	fl.StringVar(&f.role, "role", "gateway", "what the Envoy is for: gateway or sidecar")
	fl.StringVar(&f.nodeID, "node-id", "", "the Envoy node id (default: the host name)")
	fl.StringVar(&f.cluster, "cluster", "", "the Envoy node cluster (default: xds.node.cluster, tenantgate)")
	fl.StringVar(&f.xdsAddress, "xds-address", "127.0.0.1:18000", "host:port of the tenantgate xDS server")
	fl.Uint32Var(&f.adminPort, "admin-port", 0, "port of the Envoy admin interface on 127.0.0.1 (default: xds.node.admin_port, 9901)")
	fl.BoolVar(&f.sotw, "sotw", false, "use state-of-the-world ADS instead of delta")
	fl.StringVar(&f.format, "format", "", "yaml or json (default: from the -o extension, else yaml)")
	fl.StringVarP(&f.out, "output", "o", "-", "file to write, - for standard output")
	return cmd
}

func runBootstrap(cmd *cobra.Command, f *bootstrapFlags) error {
	cfg, err := config.Load(f.configPath, os.Getenv)
	if err != nil {
		return err
	}
	p := envoybuild.BootstrapParams{
		Role:       envoybuild.Role(f.role),
		NodeID:     f.nodeID,
		Cluster:    f.cluster,
		XDSAddress: f.xdsAddress,
		AdminPort:  f.adminPort,
		Delta:      !f.sotw,
	}
	if p.NodeID == "" {
		if p.NodeID, err = os.Hostname(); err != nil {
			return fmt.Errorf("--node-id not given and no host name: %w", err)
		}
	}
	if p.Cluster == "" {
		p.Cluster = cfg.XDS.Node.Cluster
	}
	if p.AdminPort == 0 {
		p.AdminPort = cfg.XDS.Node.AdminPort
	}
	b, err := envoybuild.Bootstrap(p)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	format := f.format
	if format == "" {
		format = "yaml"
		if strings.EqualFold(filepath.Ext(f.out), ".json") {
			format = "json"
		}
	}
	data, err := marshalEnvoyConfig(b, format)
	if err != nil {
		return err
	}
	if f.out == "-" {
		_, err = cmd.OutOrStdout().Write(data)
		return err
	}
	return writeFileAtomic(f.out, data)
}

// marshalEnvoyConfig renders an Envoy message as Envoy's own YAML or JSON (snake_case field names).
func marshalEnvoyConfig(m proto.Message, format string) ([]byte, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	var doc any
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("render bootstrap: %w", err)
	}
	switch format {
	case "json":
		out, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("render bootstrap: %w", err)
		}
		return append(out, '\n'), nil
	case "yaml":
		var buf bytes.Buffer
		buf.WriteString("# Envoy bootstrap written by `tenantgate bootstrap`.\n")
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(doc); err != nil {
			return nil, fmt.Errorf("render bootstrap: %w", err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("render bootstrap: %w", err)
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("--format must be yaml or json (got %q)", format)
}

// writeFileAtomic writes through a temporary file in the same directory, so an Envoy never reads a
// half-written bootstrap.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bootstrap-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
