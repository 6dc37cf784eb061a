package tenantdb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tenantgate/tenantgate/tenantdb"
)

// note is one row of the notes table.
type note struct {
	TenantID string
	Body     string
}

func readNotes(ctx context.Context, q tenantdb.Querier) ([]note, error) {
	rows, err := q.Query(ctx, "SELECT tenant_id::text, body FROM notes ORDER BY id")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[note])
}

func countNotes(t testing.TB, q tenantdb.Querier) int {
	t.Helper()
	notes, err := readNotes(testContext(t), q)
	if err != nil {
		t.Fatalf("read notes: %v", err)
	}
	return len(notes)
}

// TestWithTenant_ConcurrentTenantsNeverSeeEachOther runs 50 tenants through a pool of 2 connections
// for 10,000 operations. Each operation writes a row and checks that it sees exactly its own rows;
// along the way tenants also commit the classic bug (a session-level SET) and run queries with no
// tenant at all, which must see nothing.
func TestWithTenant_ConcurrentTenantsNeverSeeEachOther(t *testing.T) {
	t.Parallel()
	const tenants, opsPerTenant = 50, 200 // 10,000 operations
	d := newTestDB(t)
	reg := prometheus.NewRegistry()
	pool := d.appPool(t, tenantdb.WithMaxConns(2), tenantdb.WithRegisterer(reg))
	ctx := testContext(t)
	ids := tenantIDs(tenants)

	var wg sync.WaitGroup
	errs := make(chan error, tenants)
	for _, id := range ids {
		wg.Go(func() {
			for i := range opsPerTenant {
				if err := tenantOperation(ctx, pool, id, i); err != nil {
					errs <- fmt.Errorf("tenant %s, op %d: %w", id, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	// Seen from outside row-level security: every tenant has exactly its own rows.
	admin := connect(t, d.adminURL)
	all, err := readNotes(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	perTenant := map[string]int{}
	for _, n := range all {
		if !strings.HasPrefix(n.Body, n.TenantID+"#") {
			t.Fatalf("row of tenant %s written by another tenant: %q", n.TenantID, n.Body)
		}
		perTenant[n.TenantID]++
	}
	for _, id := range ids {
		if perTenant[id] != opsPerTenant {
			t.Errorf("tenant %s has %d rows, want %d", id, perTenant[id], opsPerTenant)
		}
	}
	if resets(t, reg, "cleared") == 0 {
		t.Errorf("the pool never cleared a session-level tenant setting, yet tenants set one")
	}
}

// tenantOperation is operation i of tenant id: insert a row, then read and check every visible row.
// Every 7th operation also sets the tenant at session level after its transaction (the bug); every
// 11th reads with no tenant; every 13th updates all visible rows.
func tenantOperation(ctx context.Context, pool tenantdb.Beginner, id string, i int) error {
	err := tenantdb.WithTenant(ctx, pool, id, func(tx pgx.Tx) error {
		// Insert and read in one round trip, and count on the server, to keep 10,000 operations
		// quick: every visible row must be this tenant's, and there must be as many as it wrote.
		batch := &pgx.Batch{}
		batch.Queue("INSERT INTO notes (tenant_id, body) VALUES ($1, $2)", id, fmt.Sprintf("%s#%d", id, i))
		var visible, foreign int
		var foreignTenant *string
		batch.Queue(`SELECT count(*),
			count(*) FILTER (WHERE tenant_id <> $1::uuid OR body NOT LIKE $1::text || '#%'),
			min(tenant_id::text) FILTER (WHERE tenant_id <> $1::uuid)
			FROM notes`, id).QueryRow(func(row pgx.Row) error {
			return row.Scan(&visible, &foreign, &foreignTenant)
		})
		if err := tx.SendBatch(ctx, batch).Close(); err != nil {
			return fmt.Errorf("insert and read: %w", err)
		}
		if foreign != 0 {
			return fmt.Errorf("sees %d rows of other tenants (%v)", foreign, show(foreignTenant))
		}
		if visible != i+1 {
			return fmt.Errorf("sees %d rows, want its own %d", visible, i+1)
		}
		if i%13 == 0 {
			tag, err := tx.Exec(ctx, "UPDATE notes SET body = body")
			if err != nil {
				return fmt.Errorf("update: %w", err)
			}
			if tag.RowsAffected() != int64(i+1) {
				return fmt.Errorf("update touched %d rows, want its own %d", tag.RowsAffected(), i+1)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	p := pool.(interface {
		Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
		Query(context.Context, string, ...any) (pgx.Rows, error)
	})
	if i%7 == 0 {
		if _, err := p.Exec(ctx, "SET app.tenant_id = '"+id+"'"); err != nil {
			return fmt.Errorf("session-level set: %w", err)
		}
	}
	if i%11 == 0 {
		notes, err := readNotes(ctx, p)
		if err != nil {
			return fmt.Errorf("read with no tenant: %w", err)
		}
		if len(notes) != 0 {
			return fmt.Errorf("with no tenant set, sees %d rows (first of tenant %s)", len(notes), notes[0].TenantID)
		}
	}
	return nil
}

// resets reads tenantdb_conn_resets_total{outcome} from reg.
func resets(t testing.TB, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "tenantdb_conn_resets_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestPool_SessionLevelTenantDoesNotLeakToNextRequest makes the classic bug in several ways on a
// pool of one connection, then checks what the next request on that same connection sees. The
// plain pgxpool runs are the control: they show the leak the guarded pool prevents.
func TestPool_SessionLevelTenantDoesNotLeakToNextRequest(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	victim, leaker := tenantIDs(2)[0], tenantIDs(1)[0]
	d.seed(t, []string{victim, leaker}, 3)

	bugs := []struct {
		name string
		bug  func(ctx context.Context, pool poolLike) error
		// plainLeaks: without the guard the setting leaks. Bugs made inside WithTenant do not leak even
		// then: its commit clears the session-level setting.
		plainLeaks bool
	}{
		{"SET outside any transaction", func(ctx context.Context, pool poolLike) error {
			_, err := pool.Exec(ctx, "SET app.tenant_id = '"+leaker+"'")
			return err
		}, true},
		{"set_config at session level outside any transaction", func(ctx context.Context, pool poolLike) error {
			_, err := pool.Exec(ctx, "SELECT set_config('app.tenant_id', $1, false)", leaker)
			return err
		}, true},
		{"SET inside WithTenant, which outlives its commit", func(ctx context.Context, pool poolLike) error {
			return tenantdb.WithTenant(ctx, pool, leaker, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "SET app.tenant_id = '"+leaker+"'")
				return err
			})
		}, false},
		{"SET inside WithTenant, which then fails", func(ctx context.Context, pool poolLike) error {
			err := tenantdb.WithTenant(ctx, pool, leaker, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "SET app.tenant_id = '"+leaker+"'"); err != nil {
					return err
				}
				return errors.New("request failed")
			})
			if err == nil {
				return errors.New("WithTenant succeeded, want the request's error")
			}
			// The rollback undid the SET: show the leak by setting it again, at session level.
			_, err = pool.Exec(ctx, "SET app.tenant_id = '"+leaker+"'")
			return err
		}, true},
		{"raw COMMIT, SET and BEGIN inside WithTenant", func(ctx context.Context, pool poolLike) error {
			return tenantdb.WithTenant(ctx, pool, leaker, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "COMMIT; SET app.tenant_id = '"+leaker+"'; BEGIN")
				return err
			})
		}, false},
	}
	for _, bug := range bugs {
		for _, guarded := range []bool{true, false} {
			name := bug.name + "/guarded pool"
			if !guarded {
				name = bug.name + "/plain pgxpool"
			}
			t.Run(name, func(t *testing.T) {
				ctx := testContext(t)
				var pool poolLike
				if guarded {
					pool = d.appPool(t, tenantdb.WithMaxConns(1))
				} else {
					pool = plainPool(t, d.appURL, 1)
				}
				before := backendPID(t, pool)
				if err := bug.bug(ctx, pool); err != nil {
					t.Fatalf("make the bug: %v", err)
				}

				// The next request gets the same connection and sets no tenant.
				if pid := backendPID(t, pool); pid != before {
					t.Fatalf("next request got backend %d, want the same connection %d", pid, before)
				}
				seen := countNotes(t, pool)
				if !guarded && bug.plainLeaks {
					// The control: this is the leak the guard is there for.
					if seen == 0 {
						t.Fatalf("control: a plain pool should leak the session-level tenant, saw no rows")
					}
					return
				}
				if seen != 0 {
					t.Fatalf("next request with no tenant sees %d rows of tenant %s", seen, leaker)
				}
				var setting *string
				if err := pool.QueryRow(ctx, "SELECT current_setting('app.tenant_id', true)").Scan(&setting); err != nil {
					t.Fatal(err)
				}
				if setting != nil && *setting != "" {
					t.Fatalf("app.tenant_id = %q on a connection handed out, want empty", *setting)
				}
				// And a request for another tenant sees that tenant only.
				mustWithTenant(t, ctx, pool, victim, func(tx pgx.Tx) error {
					notes, err := readNotes(ctx, tx)
					if err != nil {
						return err
					}
					for _, n := range notes {
						if n.TenantID != victim {
							return fmt.Errorf("tenant %s sees a row of %s", victim, n.TenantID)
						}
					}
					if len(notes) != 3 {
						return fmt.Errorf("tenant sees %d rows, want 3", len(notes))
					}
					return nil
				})
			})
		}
	}
}

// poolLike is what the tests use of a pool.
type poolLike interface {
	tenantdb.Beginner
	tenantdb.Querier
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func backendPID(t testing.TB, q poolLike) uint32 {
	t.Helper()
	var pid uint32
	if err := q.QueryRow(testContext(t), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestNoTenant_ReturnsZeroRows queries with no tenant set on a fresh connection (app.tenant_id
// undefined, NULL) and on one reused after a tenant's transaction (app.tenant_id is ” then).
func TestNoTenant_ReturnsZeroRows(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	tenant := tenantIDs(1)[0]
	d.seed(t, []string{tenant}, 5)

	tests := []struct {
		name        string
		prepare     func(ctx context.Context, conn *pgx.Conn) error
		wantSetting *string
	}{
		{"fresh connection", func(context.Context, *pgx.Conn) error { return nil }, nil},
		{"connection reused after a tenant's transaction", func(ctx context.Context, conn *pgx.Conn) error {
			return tenantdb.WithTenant(ctx, conn, tenant, func(tx pgx.Tx) error {
				if n := countNotes(t, tx); n != 5 {
					return fmt.Errorf("tenant sees %d rows, want 5", n)
				}
				return nil
			})
		}, new("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			conn := connect(t, d.appURL)
			if err := tt.prepare(ctx, conn); err != nil {
				t.Fatal(err)
			}
			var setting *string
			if err := conn.QueryRow(ctx, "SELECT current_setting('app.tenant_id', true)").Scan(&setting); err != nil {
				t.Fatal(err)
			}
			if (setting == nil) != (tt.wantSetting == nil) || setting != nil && *setting != *tt.wantSetting {
				t.Fatalf("app.tenant_id = %v, want %v (the case this test is about)", show(setting), show(tt.wantSetting))
			}
			if n := countNotes(t, conn); n != 0 {
				t.Fatalf("with no tenant set, sees %d rows, want 0", n)
			}
			_, err := conn.Exec(ctx, "INSERT INTO notes (tenant_id, body) VALUES ($1, 'x')", tenant)
			if code := pgCode(err); code != "42501" {
				t.Fatalf("insert with no tenant set: error %v, want row-level security violation (42501)", err)
			}
		})
	}
}

func show(s *string) string {
	if s == nil {
		return "NULL"
	}
	return fmt.Sprintf("%q", *s)
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestOwner_IsBoundByTheTenantPolicy connects as the (non-superuser) owner of the table: forced
// row-level security binds it like the application role.
func TestOwner_IsBoundByTheTenantPolicy(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	mine, other := tenantIDs(2)[0], tenantIDs(1)[0]
	d.seed(t, []string{mine, other}, 4)
	ctx := testContext(t)
	conn := connect(t, d.ownerURL)

	var super, owns bool
	err := conn.QueryRow(ctx, `SELECT r.rolsuper, c.relowner = r.oid FROM pg_roles r, pg_class c
		WHERE r.rolname = current_user AND c.oid = 'notes'::regclass`).Scan(&super, &owns)
	if err != nil {
		t.Fatal(err)
	}
	if super || !owns {
		t.Fatalf("test set-up: owner connection superuser=%v owns notes=%v, want false, true", super, owns)
	}

	if n := countNotes(t, conn); n != 0 {
		t.Errorf("owner with no tenant sees %d rows, want 0", n)
	}
	mustWithTenant(t, ctx, conn, mine, func(tx pgx.Tx) error {
		notes, err := readNotes(ctx, tx)
		if err != nil {
			return err
		}
		if len(notes) != 4 {
			return fmt.Errorf("owner as tenant sees %d rows, want 4", len(notes))
		}
		for _, n := range notes {
			if n.TenantID != mine {
				return fmt.Errorf("owner as tenant %s sees a row of %s", mine, n.TenantID)
			}
		}
		return nil
	})
	err = tenantdb.WithTenant(ctx, conn, mine, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO notes (tenant_id, body) VALUES ($1, 'x')", other)
		return err
	})
	if pgCode(err) != "42501" {
		t.Fatalf("owner inserting another tenant's row: error %v, want 42501", err)
	}
}

// TestWithTenant_WritesForAnotherTenantAreRefused tries, as one tenant, to write rows that belong to
// another.
func TestWithTenant_WritesForAnotherTenantAreRefused(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	ids := tenantIDs(2)
	mine, other := ids[0], ids[1]
	d.seed(t, []string{mine, other}, 2)
	pool := d.appPool(t)

	tests := []struct {
		name string
		sql  string
	}{
		{"insert a row with another tenant's id", "INSERT INTO notes (tenant_id, body) VALUES ($1, 'x')"},
		{"move an own row to another tenant", "UPDATE notes SET tenant_id = $1"},
		{"insert with the tenant id left out", "INSERT INTO notes (tenant_id, body) VALUES (NULLIF($1, $1)::uuid, 'x')"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			err := tenantdb.WithTenant(ctx, pool, mine, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, tt.sql, other)
				return err
			})
			if code := pgCode(err); code != "42501" && code != "23502" {
				t.Fatalf("error %v, want a row-level security or not-null violation", err)
			}
			admin := connect(t, d.adminURL)
			var mineRows, otherRows int
			if err := admin.QueryRow(ctx, "SELECT count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE tenant_id = $2) FROM notes", mine, other).Scan(&mineRows, &otherRows); err != nil {
				t.Fatal(err)
			}
			if mineRows != 2 || otherRows != 2 {
				t.Fatalf("after the refused write: %d and %d rows, want 2 and 2", mineRows, otherRows)
			}
		})
	}

	// Deleting or updating another tenant's rows is not refused: they are simply not there.
	ctx := testContext(t)
	for _, sql := range []string{"DELETE FROM notes WHERE tenant_id = $1", "UPDATE notes SET body = 'changed' WHERE tenant_id = $1"} {
		mustWithTenant(t, ctx, pool, mine, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, sql, other)
			if err == nil && tag.RowsAffected() != 0 {
				err = fmt.Errorf("%q touched %d rows of another tenant", sql, tag.RowsAffected())
			}
			return err
		})
	}
}

// TestPool_ClearsARoleDefaultTenant: a tenant set as the role's default (ALTER ROLE ... SET) would
// be on every new connection; the guard clears it when the connection is made.
func TestPool_ClearsARoleDefaultTenant(t *testing.T) {
	t.Parallel()
	d := newTestDB(t)
	tenant := tenantIDs(1)[0]
	d.seed(t, []string{tenant}, 2)
	mustExec(t, connect(t, d.adminURL), "ALTER ROLE "+pgx.Identifier{d.app}.Sanitize()+
		" IN DATABASE "+pgx.Identifier{dbName(t, d.adminURL)}.Sanitize()+" SET app.tenant_id = '"+tenant+"'")

	if n := countNotes(t, plainPool(t, d.appURL, 1)); n != 2 {
		t.Fatalf("control: a plain pool with the role default sees %d rows, want 2", n)
	}
	if n := countNotes(t, d.appPool(t)); n != 0 {
		t.Fatalf("guarded pool with a role default tenant sees %d rows, want 0", n)
	}
}
