package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/testenv"
)

// With a database URL, serve migrates the registry schema at start-up, serves from Postgres, and
// follows its change feed: a tenant created by another process reaches the running server.
func TestServe_PostgresRegistry(t *testing.T) {
	url := testenv.Database(t)
	p := startServe(t, url)
	logs, adminAddr := &p.logs, p.adminAddr
	if !strings.Contains(logs.String(), "registry migration applied") || strings.Contains(logs.String(), "in-memory registry") {
		t.Errorf("log does not show the Postgres registry migrated at start-up:\n%s", logs.String())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := registry.OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Create(ctx, tenant.Tenant{
		ID: tenant.NewID(), Slug: "from-elsewhere", Name: "From elsewhere", Plan: "free", Model: tenant.Pool,
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		return strings.Contains(httpBody(t, "http://"+adminAddr+"/metrics"), "tenantgate_registry_watch_changes_total 1")
	})

	p.terminate(t)
}
