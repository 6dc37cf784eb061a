package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/tenantdb"
)

// runDB runs `tenantgate db ...` as main does and returns its output and error (non-nil means
// main exits 1).
func runDB(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"db"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestDBCheckRLS_FailsOnAnUnprotectedTableAndPassesWhenProtected(t *testing.T) {
	url := testenv.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := tenantdb.Install(ctx, conn); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE TABLE notes (tenant_id uuid NOT NULL, body text)",
		"SELECT tenantdb.protect('notes')",
		"CREATE TABLE invoices (tenant_id uuid NOT NULL, total numeric)", // left unprotected
		"CREATE TABLE plans (name text)",                                 // not tenant-scoped
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	out, err := runDB(t, "check-rls", "--database-url", url)
	if err == nil {
		t.Fatalf("check-rls passed with an unprotected table; output:\n%s", out)
	}
	if !strings.Contains(out, `UNPROTECTED "public"."invoices"`) {
		t.Errorf("output does not name the unprotected table:\n%s", out)
	}
	if strings.Contains(out, `"notes"`) || strings.Contains(out, `"plans"`) {
		t.Errorf("output names a table that is fine:\n%s", out)
	}

	if _, err := conn.Exec(ctx, "SELECT tenantdb.protect('invoices')"); err != nil {
		t.Fatal(err)
	}
	out, err = runDB(t, "check-rls", "--database-url", url)
	if err != nil {
		t.Fatalf("check-rls failed with every table protected: %v\n%s", err, out)
	}
	if !strings.Contains(out, "ok:") {
		t.Errorf("output does not say ok:\n%s", out)
	}

	// The superuser it connected as is no application role.
	out, err = runDB(t, "check-rls", "--database-url", url, "--app-role", "postgres")
	if err == nil || !strings.Contains(out, "superuser") {
		t.Fatalf("check-rls --app-role postgres: %v\n%s", err, out)
	}
}

func TestDBCheckRLS_RequiresADatabaseURL(t *testing.T) {
	t.Setenv("TENANTGATE_DATABASE_URL", "")
	if _, err := runDB(t, "check-rls", "--database-url", ""); err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("check-rls with no URL: %v, want an error naming --database-url", err)
	}
}
