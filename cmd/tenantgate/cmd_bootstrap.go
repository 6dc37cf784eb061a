package main

import "github.com/spf13/cobra"

// Placeholder until the xds work lands; replaced by that work.
func newBootstrapCmd() *cobra.Command {
	return &cobra.Command{Use: "bootstrap", Hidden: true}
}
