package main

import "github.com/spf13/cobra"

// Placeholder until the registry work lands; replaced by that work.
func newMigrateCmd() *cobra.Command {
	return &cobra.Command{Use: "migrate", Hidden: true}
}
