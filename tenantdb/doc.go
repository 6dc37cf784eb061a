// Package tenantdb keeps each tenant's rows to itself in a shared Postgres database: row-level
// security on app.tenant_id, set only transaction-locally by WithTenant, and a pool that clears any
// tenant setting a connection carries before it is handed out again.
//
// # Adopting it
//
// Every tenant-scoped table has a tenant_id uuid column. Migrations, run as the role that owns the
// tables, install the SQL side once and protect each table (both are idempotent, and InstallSQL
// gives the SQL for migration tools that apply files):
//
//	tenantdb.Install(ctx, ownerConn)
//	tenantdb.EnsureAppRole(ctx, ownerConn, tenantdb.AppRole{Name: "app", Login: true}) // needs CREATEROLE
//	tenantdb.Protect(ctx, ownerConn, "public.notes", "app")
//
// or, in SQL: SELECT tenantdb.protect('public.notes', 'app'). Protect enables and forces row-level
// security (so the owner is bound too) and creates the tenant_isolation policy, whose USING and WITH
// CHECK both compare tenant_id with the transaction's app.tenant_id. With no tenant set, on a fresh
// connection or a reused one, the policy matches nothing: reads return no rows, writes are refused.
//
// The request path connects as the application role, never as the owner or a superuser (superusers
// bypass row-level security even when it is forced), through NewPool, and does all tenant work in
// WithTenant:
//
//	pool, err := tenantdb.NewPool(ctx, "postgres://app@db/product", tenantdb.WithRegisterer(reg))
//	...
//	err = tenantdb.WithTenant(ctx, pool, tenantID, func(tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, "INSERT INTO notes (tenant_id, body) VALUES ($1, $2)", tenantID, body)
//		return err // queries in tx see tenantID's rows only
//	})
//
// Clients in other languages call SELECT tenantdb.set_tenant($1) as the first statement of each
// transaction. CheckRLS (and `tenantgate db check-rls`) lists tables with a tenant_id column that are
// not protected; RoleProblems says whether a role could read across tenants.
package tenantdb
