package tenantdb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantgate/tenantgate/tenantdb"
)

// BenchmarkTenantQuery reads one tenant's rows (100 of 10,000) through WithTenant, with row-level
// security doing the filtering, and compares it with the same query with an explicit
// WHERE tenant_id = $1 on a plain pool without row-level security (the baseline). x_baseline is
// each variant's time per operation over the baseline's, measured in the same run.
//
//	where_clause           baseline: SELECT ... WHERE tenant_id = $1, no RLS, no transaction
//	where_clause_in_tx     the baseline inside BEGIN/COMMIT: what the transaction itself costs
//	with_tenant            WithTenant on NewPool: transaction + tenant setting + RLS + pool guard
//	with_tenant_no_guard   WithTenant on a plain pgxpool: the same without the pool guard
//	parallel/*             8 goroutines on a pool of 2: WithTenant with and without the guard
//	guard_cost/*           the baseline query outside WithTenant (so the guard's reset runs on every
//	                       release) on a guarded pool of 2 vs a plain one, alone and from 8 goroutines
func BenchmarkTenantQuery(b *testing.B) {
	d, ids := newBenchDB(b)
	tenants := len(ids)
	ctx := testContext(b)

	noRLS := plainPool(b, d.adminURL, 4) // a superuser: row-level security does not apply
	guarded := d.appPool(b, tenantdb.WithMaxConns(4))
	unguarded := plainPool(b, d.appURL, 4)
	guarded2 := d.appPool(b, tenantdb.WithMaxConns(2))
	unguarded2 := plainPool(b, d.appURL, 2)

	whereClause := func(ctx context.Context, q tenantdb.Querier, id string) error {
		return readAll(ctx, q, "SELECT id, body FROM notes WHERE tenant_id = $1", id)
	}
	withTenant := func(pool *pgxpool.Pool) func(context.Context, string) error {
		return func(ctx context.Context, id string) error {
			return tenantdb.WithTenant(ctx, pool, id, func(tx pgx.Tx) error {
				return readAll(ctx, tx, "SELECT id, body FROM notes")
			})
		}
	}

	var baseline float64 // ns/op of where_clause
	report := func(b *testing.B) {
		perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		if baseline > 0 {
			b.ReportMetric(perOp/baseline, "x_baseline")
		}
	}
	b.Run("where_clause", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if err := whereClause(ctx, noRLS, ids[i%tenants]); err != nil {
				b.Fatal(err)
			}
		}
		baseline = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("where_clause_in_tx", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			err := pgx.BeginFunc(ctx, noRLS, func(tx pgx.Tx) error { return whereClause(ctx, tx, ids[i%tenants]) })
			if err != nil {
				b.Fatal(err)
			}
		}
		report(b)
	})
	for _, v := range []struct {
		name string
		op   func(context.Context, string) error
	}{
		{"with_tenant", withTenant(guarded)},
		{"with_tenant_no_guard", withTenant(unguarded)},
	} {
		b.Run(v.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if err := v.op(ctx, ids[i%tenants]); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}

	var parallelBaseline float64 // ns/op of parallel/with_tenant_no_guard
	for _, v := range []struct {
		name     string
		op       func(context.Context, string) error
		baseline bool
	}{
		{"parallel/with_tenant_no_guard", withTenant(unguarded2), true},
		{"parallel/with_tenant", withTenant(guarded2), false},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if err := v.op(ctx, ids[i%tenants]); err != nil {
						b.Error(err)
						return
					}
				}
			})
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if v.baseline {
				parallelBaseline = perOp
			} else if parallelBaseline > 0 {
				b.ReportMetric(perOp/parallelBaseline, "x_no_guard")
			}
		})
	}

	guardBaseline := map[bool]float64{} // ns/op on the plain pool, by parallel
	noRLSGuarded, err := tenantdb.NewPool(ctx, d.adminURL, tenantdb.WithMaxConns(2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(noRLSGuarded.Close)
	noRLSPlain := plainPool(b, d.adminURL, 2)
	for _, v := range []struct {
		name     string
		pool     *pgxpool.Pool
		parallel bool
	}{
		{"guard_cost/plain_pool", noRLSPlain, false},
		{"guard_cost/guarded_pool", noRLSGuarded, false},
		{"guard_cost/parallel/plain_pool", noRLSPlain, true},
		{"guard_cost/parallel/guarded_pool", noRLSGuarded, true},
	} {
		b.Run(v.name, func(b *testing.B) {
			if v.parallel {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						if err := whereClause(ctx, v.pool, ids[i%tenants]); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for i := 0; b.Loop(); i++ {
					if err := whereClause(ctx, v.pool, ids[i%tenants]); err != nil {
						b.Fatal(err)
					}
				}
			}
			perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			if v.pool == noRLSPlain {
				guardBaseline[v.parallel] = perOp
			} else if guardBaseline[v.parallel] > 0 {
				b.ReportMetric(perOp/guardBaseline[v.parallel], "x_no_guard")
			}
		})
	}
}

// BenchmarkTenantQueryInterleaved measures the same pairs as BenchmarkTenantQuery, alternating the
// two sides of each pair on every iteration, so that load from other processes on a shared machine
// falls on both alike. Each pair reports both times per operation and their ratio:
//
//	with_tenant_vs_where        WithTenant on NewPool vs explicit WHERE tenant_id = $1, no RLS, plain pool
//	with_tenant_vs_where_in_tx  the same, with the WHERE query in BEGIN/COMMIT (same round trips)
//	guard                       the WHERE query outside WithTenant on a guarded vs a plain pool (the
//	                            guard resets on every release then)
func BenchmarkTenantQueryInterleaved(b *testing.B) {
	d, ids := newBenchDB(b)
	tenants := len(ids)
	ctx := testContext(b)

	noRLS := plainPool(b, d.adminURL, 2) // a superuser: row-level security does not apply
	app := d.appPool(b, tenantdb.WithMaxConns(2))
	noRLSGuarded, err := tenantdb.NewPool(ctx, d.adminURL, tenantdb.WithMaxConns(2))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(noRLSGuarded.Close)

	whereClause := func(pool *pgxpool.Pool) func(string) error {
		return func(id string) error {
			return readAll(ctx, pool, "SELECT id, body FROM notes WHERE tenant_id = $1", id)
		}
	}
	whereInTx := func(id string) error {
		return pgx.BeginFunc(ctx, noRLS, func(tx pgx.Tx) error {
			return readAll(ctx, tx, "SELECT id, body FROM notes WHERE tenant_id = $1", id)
		})
	}
	withTenant := func(id string) error {
		return tenantdb.WithTenant(ctx, app, id, func(tx pgx.Tx) error {
			return readAll(ctx, tx, "SELECT id, body FROM notes")
		})
	}
	for _, pair := range []struct {
		name                   string
		baseline, measured     func(string) error
		baselineUnit, measUnit string
	}{
		{"with_tenant_vs_where", whereClause(noRLS), withTenant, "where_ns/op", "with_tenant_ns/op"},
		{"with_tenant_vs_where_in_tx", whereInTx, withTenant, "where_in_tx_ns/op", "with_tenant_ns/op"},
		{"guard", whereClause(noRLS), whereClause(noRLSGuarded), "plain_pool_ns/op", "guarded_pool_ns/op"},
	} {
		b.Run(pair.name, func(b *testing.B) {
			var baseline, measured time.Duration
			for i := 0; b.Loop(); i++ {
				id := ids[i%tenants]
				start := time.Now()
				if err := pair.baseline(id); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := pair.measured(id); err != nil {
					b.Fatal(err)
				}
				baseline += mid.Sub(start)
				measured += time.Since(mid)
			}
			b.ReportMetric(float64(baseline.Nanoseconds())/float64(b.N), pair.baselineUnit)
			b.ReportMetric(float64(measured.Nanoseconds())/float64(b.N), pair.measUnit)
			b.ReportMetric(float64(measured)/float64(baseline), "x_baseline")
		})
	}
}

// newBenchDB makes the database both benchmarks read: 100 tenants with 100 notes each, analyzed.
func newBenchDB(b *testing.B) (*testDB, []string) {
	b.Helper()
	const tenants, rowsPerTenant = 100, 100
	d := newTestDB(b)
	ids := tenantIDs(tenants)
	d.seed(b, ids, rowsPerTenant)
	mustExec(b, connect(b, d.adminURL), "VACUUM ANALYZE notes")
	return d, ids
}

// readAll runs a query and reads every row, as an application would.
func readAll(ctx context.Context, q tenantdb.Querier, sql string, args ...any) error {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return err
	}
	type row struct {
		ID   int64
		Body string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err == nil && len(got) != 100 {
		err = fmt.Errorf("read %d rows, want the tenant's 100", len(got))
	}
	return err
}
