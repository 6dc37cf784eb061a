package main

import "github.com/spf13/cobra"

// Placeholder until the authz work lands; replaced by that work.
func newTokenCmd() *cobra.Command {
	return &cobra.Command{Use: "token", Hidden: true}
}
