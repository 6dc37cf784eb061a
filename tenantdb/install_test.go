package tenantdb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tenantgate/tenantgate/tenantdb"
)

// TestInstall_IsIdempotentAndSafeConcurrently runs Install and Protect again, several at once, on a
// database that already has them, and checks the table is still protected and usable.
func TestInstall_IsIdempotentAndSafeConcurrently(t *testing.T) {
	t.Parallel()
	d := newTestDB(t) // installed and protected once already
	ctx := testContext(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, d.ownerURL)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			if err := tenantdb.Install(ctx, conn); err != nil {
				errs <- err
			}
			if err := tenantdb.Protect(ctx, conn, "public.notes", d.app); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	owner := connect(t, d.ownerURL)
	if err := tenantdb.EnsureAppRole(ctx, owner, tenantdb.AppRole{Name: d.app, Login: true}); err != nil {
		t.Fatalf("ensure app role again: %v", err)
	}
	var policies int
	if err := owner.QueryRow(ctx, "SELECT count(*) FROM pg_policy WHERE polrelid = 'notes'::regclass").Scan(&policies); err != nil {
		t.Fatal(err)
	}
	if policies != 1 {
		t.Fatalf("notes has %d policies after repeated Protect, want 1", policies)
	}
	if findings, err := tenantdb.CheckRLS(ctx, owner); err != nil || len(findings) != 0 {
		t.Fatalf("check after repeated install: %v, %v", findings, err)
	}
	tenant := tenantIDs(1)[0]
	d.seed(t, []string{tenant}, 1)
	mustWithTenant(t, ctx, d.appPool(t), tenant, func(tx pgx.Tx) error {
		if n := countNotes(t, tx); n != 1 {
			return fmt.Errorf("app sees %d rows, want 1", n)
		}
		return nil
	})
}

// TestSetTenant_ScopesOnlyTheTransaction uses the SQL entry point that clients in other languages
// use, tenantdb.set_tenant, as the application role.
func TestSetTenant_ScopesOnlyTheTransaction(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	mine, other := tenantIDs(2)[0], tenantIDs(1)[0]
	d.seed(t, []string{mine, other}, 2)
	ctx := testContext(t)
	conn := connect(t, d.appURL)

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, tx, "SELECT tenantdb.set_tenant($1)", mine)
	var current string
	if err := tx.QueryRow(ctx, "SELECT tenantdb.current_tenant()::text").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if current != mine {
		t.Fatalf("current_tenant() = %s, want %s", current, mine)
	}
	if n := countNotes(t, tx); n != 2 {
		t.Fatalf("tenant sees %d rows, want 2", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var after *string
	if err := conn.QueryRow(ctx, "SELECT tenantdb.current_tenant()::text").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != nil {
		t.Fatalf("after commit, current_tenant() = %s, want NULL", *after)
	}
	if n := countNotes(t, conn); n != 0 {
		t.Fatalf("after commit, sees %d rows, want 0", n)
	}
	if _, err := conn.Exec(ctx, "SELECT tenantdb.set_tenant(NULL)"); pgCode(err) != "22004" {
		t.Fatalf("set_tenant(NULL): %v, want a null_value_not_allowed error", err)
	}
	if _, err := conn.Exec(ctx, "SELECT tenantdb.protect('notes')"); pgCode(err) != "42501" {
		t.Fatalf("app role calling protect: %v, want permission denied", err)
	}
}

// TestProtect_RefusesTablesWithoutAUUIDTenantID: Protect needs a tenant_id uuid column to compare.
func TestProtect_RefusesTablesWithoutAUUIDTenantID(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	ctx := testContext(t)
	owner := connect(t, d.ownerURL)
	mustExec(t, owner, "CREATE TABLE no_tenant (id int)")
	mustExec(t, owner, "CREATE TABLE text_tenant (tenant_id text)")
	tests := []struct {
		table, wantCode string
	}{
		{"no_tenant", "42703"},
		{"text_tenant", "42804"},
		{"missing_table", "42P01"},
	}
	for _, tt := range tests {
		t.Run(tt.table, func(t *testing.T) {
			if err := tenantdb.Protect(ctx, owner, tt.table, d.app); pgCode(err) != tt.wantCode {
				t.Fatalf("Protect(%s) = %v, want SQLSTATE %s", tt.table, err, tt.wantCode)
			}
		})
	}
}

// TestProtect_CoversPartitionsQueriedDirectly: a parent's policy does not apply to a query that
// names a partition, so Protect protects the partitions too.
func TestProtect_CoversPartitionsQueriedDirectly(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	ctx := testContext(t)
	owner := connect(t, d.ownerURL)
	mustExec(t, owner, "CREATE TABLE events (tenant_id uuid NOT NULL, n int) PARTITION BY HASH (tenant_id)")
	mustExec(t, owner, "CREATE TABLE events_0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0)")
	mustExec(t, owner, "CREATE TABLE events_1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1)")
	if err := tenantdb.Protect(ctx, owner, "events", d.app); err != nil {
		t.Fatal(err)
	}
	tenants := tenantIDs(8)
	for _, id := range tenants {
		mustWithTenant(t, ctx, owner, id, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO events VALUES ($1, 1)", id)
			return err
		})
	}
	app := connect(t, d.appURL)
	for _, table := range []string{"events", "events_0", "events_1"} {
		var n int
		if err := app.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s with no tenant: %d rows, want 0", table, n)
		}
		err := tenantdb.WithTenant(ctx, app, tenants[0], func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE tenant_id <> $1", tenants[0]).Scan(&n)
		})
		if err != nil || n != 0 {
			t.Errorf("%s as one tenant: %d rows of others (err %v), want 0", table, n, err)
		}
	}
}

// TestEnsureAppRole_RefusesRolesThatCouldReadAcrossTenants checks the role EnsureAppRole makes and
// the existing roles it refuses.
func TestEnsureAppRole_RefusesRolesThatCouldReadAcrossTenants(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	ctx := testContext(t)
	admin := connect(t, d.adminURL)
	owner := connect(t, d.ownerURL)

	var super, bypass, login bool
	err := admin.QueryRow(ctx, "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1", d.app).
		Scan(&super, &bypass, &login)
	if err != nil {
		t.Fatal(err)
	}
	if super || bypass || !login {
		t.Fatalf("app role: superuser=%v bypassrls=%v login=%v, want false false true", super, bypass, login)
	}
	if problems, err := tenantdb.RoleProblems(ctx, owner, d.app); err != nil || len(problems) != 0 {
		t.Fatalf("RoleProblems(app) = %v, %v; want none", problems, err)
	}

	tests := []struct {
		name     string
		setup    string // statements run as superuser, separated by "; "; %[1]s is the role
		wantPart string
	}{
		{"superuser", "CREATE ROLE %[1]s SUPERUSER", "superuser"},
		{"bypasses row-level security", "CREATE ROLE %[1]s BYPASSRLS", "bypasses row-level security"},
		{"owns a table", "CREATE ROLE %[1]s; CREATE TABLE owned_%[1]s (tenant_id uuid); ALTER TABLE owned_%[1]s OWNER TO %[1]s", "owns 1 objects"},
		{"member of the owner", "CREATE ROLE %[1]s; GRANT " + d.owner + " TO %[1]s", "member of " + d.owner},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			role := fmt.Sprintf("%s_bad%d", d.app, i)
			t.Cleanup(func() { dropRoles(t, d.adminURL, role) })
			for _, sql := range strings.Split(fmt.Sprintf(tt.setup, role), "; ") {
				mustExec(t, admin, sql)
			}
			err := tenantdb.EnsureAppRole(ctx, owner, tenantdb.AppRole{Name: role, Login: true})
			if !errors.Is(err, tenantdb.ErrUnsafeRole) || !strings.Contains(err.Error(), tt.wantPart) {
				t.Fatalf("EnsureAppRole = %v, want ErrUnsafeRole mentioning %q", err, tt.wantPart)
			}
		})
	}
}

// TestWithTenant_EndsTheTransaction checks commit, rollback on error and on panic, refused tenant
// ids and transaction options.
func TestWithTenant_EndsTheTransaction(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	pool := d.appPool(t)
	tenant := tenantIDs(1)[0]
	insert := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO notes (tenant_id, body) VALUES ($1, 'x')", tenant)
		return err
	}
	errBoom := errors.New("boom")

	tests := []struct {
		name      string
		tenantID  string
		opts      pgx.TxOptions
		fn        func(ctx context.Context, tx pgx.Tx) error
		wantErr   func(error) bool
		wantAdded int
	}{
		{"commits when fn succeeds", tenant, pgx.TxOptions{}, insert, isNil, 1},
		{"rolls back when fn fails", tenant, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
			if err := insert(ctx, tx); err != nil {
				return err
			}
			return errBoom
		}, func(err error) bool { return errors.Is(err, errBoom) }, 0},
		{"rolls back when fn panics", tenant, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
			if err := insert(ctx, tx); err != nil {
				return err
			}
			panic(errBoom)
		}, func(err error) bool { return errors.Is(err, errBoom) }, 0},
		{"rolls back when fn swallows an error that aborted the transaction", tenant, pgx.TxOptions{}, func(ctx context.Context, tx pgx.Tx) error {
			if err := insert(ctx, tx); err != nil {
				return err
			}
			_, _ = tx.Exec(ctx, "SELECT 1/0")
			return nil
		}, func(err error) bool { return errors.Is(err, pgx.ErrTxCommitRollback) }, 0},
		{"serializable read only refuses writes", tenant, pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly},
			insert, func(err error) bool { return pgCode(err) == "25006" }, 0},
		{"refuses an id that is not a UUID", "acme", pgx.TxOptions{}, insert, isInvalidID, 0},
		{"refuses the empty id", "", pgx.TxOptions{}, insert, isInvalidID, 0},
		{"refuses the nil UUID", "00000000-0000-0000-0000-000000000000", pgx.TxOptions{}, insert, isInvalidID, 0},
		{"refuses an id with SQL in it", tenant + "', true); SELECT 1; --", pgx.TxOptions{}, insert, isInvalidID, 0},
		{"refuses a UUID in braces", "{" + tenant + "}", pgx.TxOptions{}, insert, isInvalidID, 0},
		{"refuses an unknown isolation level", tenant, pgx.TxOptions{IsoLevel: "serializable; DROP TABLE notes"}, insert, isNotNil, 0},
		{"refuses a begin query of its own", tenant, pgx.TxOptions{BeginQuery: "BEGIN"}, insert, isNotNil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			before := adminCount(t, d)
			err := callRecovering(func() error {
				return tenantdb.WithTenantTx(ctx, pool, tt.tenantID, tt.opts, func(tx pgx.Tx) error { return tt.fn(ctx, tx) })
			})
			if !tt.wantErr(err) {
				t.Fatalf("WithTenantTx = %v, not the error wanted", err)
			}
			if added := adminCount(t, d) - before; added != tt.wantAdded {
				t.Fatalf("%d rows added, want %d", added, tt.wantAdded)
			}
			if n := countNotes(t, pool); n != 0 {
				t.Fatalf("after WithTenant, the pool sees %d rows with no tenant", n)
			}
		})
	}
}

func isNil(err error) bool       { return err == nil }
func isNotNil(err error) bool    { return err != nil }
func isInvalidID(err error) bool { return errors.Is(err, tenantdb.ErrInvalidTenantID) }

// callRecovering calls f and turns a panic with an error into that error.
func callRecovering(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = p.(error)
		}
	}()
	return f()
}

func adminCount(t testing.TB, d *testDB) int {
	t.Helper()
	var n int
	if err := connect(t, d.adminURL).QueryRow(testContext(t), "SELECT count(*) FROM notes").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCurrentTenant_WorksAsColumnDefault: with DEFAULT tenantdb.current_tenant() the application
// need not pass the tenant id on insert, and with no tenant set the insert is refused.
func TestCurrentTenant_WorksAsColumnDefault(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	ctx := testContext(t)
	mustExec(t, connect(t, d.ownerURL), "ALTER TABLE notes ALTER COLUMN tenant_id SET DEFAULT tenantdb.current_tenant()")
	tenant := tenantIDs(1)[0]
	pool := d.appPool(t)
	mustWithTenant(t, ctx, pool, tenant, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO notes (body) VALUES ($1)", tenant+"#1")
		return err
	})
	var got string
	if err := connect(t, d.adminURL).QueryRow(ctx, "SELECT tenant_id::text FROM notes").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != tenant {
		t.Fatalf("row got tenant %s, want %s", got, tenant)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO notes (body) VALUES ('x')"); pgCode(err) != "23502" && pgCode(err) != "42501" {
		t.Fatalf("insert with no tenant: %v, want a refusal", err)
	}
}
