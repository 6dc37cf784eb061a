package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/registry"
)

func newMigrateCmd() *cobra.Command {
	var configPath, databaseURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Bring the tenant registry's Postgres schema up to date",
		Long: `migrate applies the tenant registry's migrations, embedded in this binary, to schema tenantgate
of the database. It holds a Postgres advisory lock while it works, so replicas that migrate at the same
time take turns; the ones that come second find nothing left to do. ` + "`tenantgate serve`" + ` runs the
same migrations at start-up when a database URL is configured.

The database URL comes from --database-url, else TENANTGATE_DATABASE_URL, else database_url in --config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configPath, os.Getenv)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("database-url") {
				cfg.DatabaseURL = config.Secret(databaseURL)
			}
			if cfg.DatabaseURL == "" {
				return errors.New("migrate: no database URL: set --database-url, TENANTGATE_DATABASE_URL or database_url in --config")
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			log, err := newLogger(cfg.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			res, err := registry.Migrate(cmd.Context(), string(cfg.DatabaseURL), log)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "tenant registry schema at version %d (%d migrations applied now)\n",
				res.Version, len(res.Applied))
			return err
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "path of the YAML config file")
	cmd.Flags().StringVar(&databaseURL, "database-url", "",
		"Postgres URL of the registry (default $TENANTGATE_DATABASE_URL, then database_url in --config)")
	return cmd
}
