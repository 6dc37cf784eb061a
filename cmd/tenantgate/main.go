// Command tenantgate is Tenantgate's one binary: the sidecar (ext_authz and rate limiting), the control
// plane (xDS and provisioner), and the tools to run and inspect them.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "tenantgate:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "tenantgate",
		Short:         "Tenant isolation for SaaS products behind Envoy",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newServeCmd(),
		newMigrateCmd(),
		newVersionCmd(),
		newBootstrapCmd(),
		newTokenCmd(),
		newTenantsCmd(),
		newDBCmd(),
		newExplainCmd(),
	)
	return root
}
