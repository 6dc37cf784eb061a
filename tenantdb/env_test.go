package tenantdb_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/tenantgate/tenantgate/internal/testenv"
	"github.com/tenantgate/tenantgate/tenantdb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testDB is a fresh database with the roles of a real deployment: a non-superuser owner that runs
// the migrations and owns the tables, and an application role that owns nothing, with a LOGIN each so
// tests can connect as them.
type testDB struct {
	adminURL string // superuser; for set-up and inspection only, never the request path
	owner    string
	app      string
	ownerURL string
	appURL   string
}

// newTestDB makes the database, the owner role and the application role (through EnsureAppRole),
// installs tenantdb and protects a notes table. The roles are dropped at cleanup.
func newTestDB(t testing.TB) *testDB {
	t.Helper()
	ctx := testContext(t)
	d := &testDB{adminURL: testenv.Database(t)}
	suffix := testenv.Suffix()
	d.owner, d.app = "tg_owner_"+suffix, "tg_app_"+suffix
	d.ownerURL, d.appURL = withUser(t, d.adminURL, d.owner), withUser(t, d.adminURL, d.app)

	admin := connect(t, d.adminURL)
	owner := pgx.Identifier{d.owner}.Sanitize()
	t.Cleanup(func() { dropRoles(t, d.adminURL, d.app, d.owner) })
	mustExec(t, admin, "CREATE ROLE "+owner+" LOGIN NOSUPERUSER NOBYPASSRLS CREATEROLE")
	mustExec(t, admin, "GRANT CREATE ON DATABASE "+pgx.Identifier{dbName(t, d.adminURL)}.Sanitize()+" TO "+owner)
	mustExec(t, admin, "GRANT CREATE, USAGE ON SCHEMA public TO "+owner)

	ownerConn := connect(t, d.ownerURL)
	if err := tenantdb.Install(ctx, ownerConn); err != nil {
		t.Fatal(err)
	}
	if err := tenantdb.EnsureAppRole(ctx, ownerConn, tenantdb.AppRole{Name: d.app, Login: true}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, ownerConn, `CREATE TABLE notes (
		id bigserial PRIMARY KEY,
		tenant_id uuid NOT NULL,
		body text NOT NULL)`)
	mustExec(t, ownerConn, "CREATE INDEX notes_tenant_id ON notes (tenant_id)")
	if err := tenantdb.Protect(ctx, ownerConn, "notes", d.app); err != nil {
		t.Fatal(err)
	}
	return d
}

// mustWithTenant runs fn in a transaction for tenant and fails the test if it returns an error.
func mustWithTenant(t testing.TB, ctx context.Context, db tenantdb.Beginner, tenant string, fn func(pgx.Tx) error) {
	t.Helper()
	if err := tenantdb.WithTenant(ctx, db, tenant, fn); err != nil {
		t.Fatal(err)
	}
}

// seed inserts n notes for each tenant, as the owner with each tenant set in turn.
func (d *testDB) seed(t testing.TB, tenants []string, n int) {
	t.Helper()
	ctx := testContext(t)
	conn := connect(t, d.ownerURL)
	for _, tenant := range tenants {
		err := tenantdb.WithTenant(ctx, conn, tenant, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO notes (tenant_id, body)
				SELECT $1::uuid, $1::text || '#' || i FROM generate_series(1, $2::int) i`, tenant, n)
			return err
		})
		if err != nil {
			t.Fatalf("seed tenant %s: %v", tenant, err)
		}
	}
}

// appPool is a guarded pool for the application role.
func (d *testDB) appPool(t testing.TB, opts ...tenantdb.Option) *pgxpool.Pool {
	t.Helper()
	pool, err := tenantdb.NewPool(testContext(t), d.appURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// plainPool is a pgxpool with no tenantdb hooks, for control experiments and baselines.
func plainPool(t testing.TB, databaseURL string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(testContext(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func connect(t testing.TB, databaseURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testContext(t), databaseURL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t testing.TB, db tenantdb.Execer, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(testContext(t), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func withUser(t testing.TB, databaseURL, user string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(user)
	return u.String()
}

func dbName(t testing.TB, databaseURL string) string {
	t.Helper()
	u, err := url.Parse(databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path[1:]
}

// dropRoles drops roles made by a test, with what they own and were granted in its database.
func dropRoles(t testing.TB, adminURL string, roles ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Errorf("drop roles: %v", err)
		return
	}
	defer conn.Close(ctx)
	for _, role := range roles {
		name := pgx.Identifier{role}.Sanitize()
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role).Scan(&exists); err != nil || !exists {
			continue
		}
		for _, sql := range []string{"DROP OWNED BY " + name + " CASCADE", "DROP ROLE " + name} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	}
}

// tenantIDs returns n new tenant ids.
func tenantIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	return ids
}
