package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/testenv"
)

// runMigrate runs `tenantgate migrate ...` as main does and returns its stdout and error.
func runMigrate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"migrate"}, args...))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestMigrate_AppliesTheMigrationsOnceThenReportsUpToDate(t *testing.T) {
	t.Setenv("TENANTGATE_DATABASE_URL", "")
	url := testenv.Database(t)
	out, err := runMigrate(t, "--database-url", url)
	if err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	if !strings.Contains(out, "schema at version 1 (1 migrations applied now)") {
		t.Errorf("first migrate printed %q", out)
	}
	out, err = runMigrate(t, "--database-url", url)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if !strings.Contains(out, "schema at version 1 (0 migrations applied now)") {
		t.Errorf("second migrate printed %q", out)
	}
}

func TestMigrate_FindsTheDatabaseURL(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, url string) []string // returns the arguments
	}{
		{"from the environment", func(t *testing.T, url string) []string {
			t.Setenv("TENANTGATE_DATABASE_URL", url)
			return nil
		}},
		{"from the config file", func(t *testing.T, url string) []string {
			t.Setenv("TENANTGATE_DATABASE_URL", "")
			path := filepath.Join(t.TempDir(), "tenantgate.yaml")
			if err := os.WriteFile(path, []byte("database_url: "+url+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--config", path}
		}},
		{"from the flag over the environment", func(t *testing.T, url string) []string {
			t.Setenv("TENANTGATE_DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
			return []string{"--database-url", url}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := testenv.Database(t)
			out, err := runMigrate(t, tt.setup(t, url)...)
			if err != nil || !strings.Contains(out, "(1 migrations applied now)") {
				t.Fatalf("migrate = %q, %v; want the migrations applied", out, err)
			}
		})
	}
}

func TestMigrate_RequiresADatabaseURL(t *testing.T) {
	t.Setenv("TENANTGATE_DATABASE_URL", "")
	_, err := runMigrate(t)
	if err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("migrate without a URL = %v, want an error naming --database-url", err)
	}
}

func TestMigrate_FailsOnAnUnreachableDatabase(t *testing.T) {
	t.Setenv("TENANTGATE_DATABASE_URL", "")
	_, err := runMigrate(t, "--database-url", "postgres://postgres@127.0.0.1:1/nothing?connect_timeout=2")
	if err == nil {
		t.Fatal("migrate of an unreachable database succeeded")
	}
}
