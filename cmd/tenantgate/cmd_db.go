package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/tenantgate/tenantgate/tenantdb"
)

// newDBCmd groups the commands that inspect and prepare an application database for tenantdb.
func newDBCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Check and prepare application databases for tenant isolation (row-level security)",
	}
	cmd.AddCommand(newCheckRLSCmd())
	return cmd
}

func newCheckRLSCmd() *cobra.Command {
	var (
		databaseURL string
		appRole     string
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check-rls",
		Short: "List tables and views with a tenant_id column that row-level security does not protect",
		Long: `check-rls lists every table (and partition) with a tenant_id column, in every non-system
schema, that lacks enabled or forced row-level security or a sound tenant_isolation policy, or has
another permissive policy that widens it, and every view with a tenant_id column that reads around
row-level security (owned by a superuser and not security_invoker; materialized and readable by
others). With --app-role it also checks that the application role cannot read across tenants
(superuser, BYPASSRLS, owning objects, member of such a role). It exits non-zero if anything is
found.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if databaseURL == "" {
				return errors.New("check-rls: --database-url (or TENANTGATE_DATABASE_URL) is required")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return checkRLS(ctx, cmd, databaseURL, appRole)
		},
	}
	cmd.Flags().StringVar(&databaseURL, "database-url", os.Getenv("TENANTGATE_DATABASE_URL"),
		"Postgres URL of the database to check (default $TENANTGATE_DATABASE_URL)")
	cmd.Flags().StringVar(&appRole, "app-role", "", "also check this application role")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "give up after this long")
	return cmd
}

// checkRLS prints what is unprotected and returns an error if anything is.
func checkRLS(ctx context.Context, cmd *cobra.Command, databaseURL, appRole string) error {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("check-rls: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	findings, err := tenantdb.CheckRLS(ctx, conn)
	if err != nil {
		return fmt.Errorf("check-rls: %w", err)
	}
	out := cmd.OutOrStdout()
	for _, f := range findings {
		fmt.Fprintf(out, "UNPROTECTED %s: %s\n", f.Name(), strings.Join(f.Problems, "; "))
	}
	var roleProblems []string
	if appRole != "" {
		if roleProblems, err = tenantdb.RoleProblems(ctx, conn, appRole); err != nil {
			return fmt.Errorf("check-rls: %w", err)
		}
		for _, p := range roleProblems {
			fmt.Fprintf(out, "UNSAFE ROLE %s: %s\n", pgx.Identifier{appRole}.Sanitize(), p)
		}
	}
	switch {
	case len(findings) > 0 && len(roleProblems) > 0:
		return fmt.Errorf("check-rls: %d unprotected tables; role %s could read across tenants", len(findings), appRole)
	case len(findings) > 0:
		return fmt.Errorf("check-rls: %d unprotected tables", len(findings))
	case len(roleProblems) > 0:
		return fmt.Errorf("check-rls: role %s could read across tenants", appRole)
	}
	fmt.Fprintln(out, "ok: every table with a tenant_id column is protected")
	return nil
}
