package main

import "github.com/spf13/cobra"

// Placeholder until the provisioner work lands; replaced by that work.
func newTenantsCmd() *cobra.Command {
	return &cobra.Command{Use: "tenants", Hidden: true}
}
