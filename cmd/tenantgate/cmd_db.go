package main

import "github.com/spf13/cobra"

// Placeholder until the tenantdb work lands; replaced by that work.
func newDBCmd() *cobra.Command {
	return &cobra.Command{Use: "db", Hidden: true}
}
