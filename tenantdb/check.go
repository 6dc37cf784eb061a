package tenantdb

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Finding is a table (or view) with a tenant_id column that is not fully protected, and why.
type Finding struct {
	Schema   string
	Table    string
	Problems []string
}

// Name is the relation's schema-qualified name, quoted where SQL needs it.
func (f Finding) Name() string { return pgx.Identifier{f.Schema, f.Table}.Sanitize() }

func (f Finding) String() string { return f.Name() + ": " + strings.Join(f.Problems, "; ") }

// checkSQL reads, for every table and partition with a tenant_id column outside the system schemas,
// its row-level security flags and policies.
const checkSQL = `
SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity,
	p.polcmd, p.polpermissive, pg_catalog.pg_get_expr(p.polqual, p.polrelid),
	pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid),
	COALESCE(p.polname = 'tenant_isolation', false), COALESCE(p.polname, '')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_policy p ON p.polrelid = c.oid
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
ORDER BY n.nspname, c.relname, p.polname`

// viewsSQL finds views and materialized views with a tenant_id column that read around row-level
// security: a view runs its query as its owner unless it is security_invoker, and row-level security
// never applies to a materialized view's stored rows.
const viewsSQL = `
SELECT n.nspname, c.relname,
	CASE c.relkind
	WHEN 'v' THEN 'view runs its query as ' || pg_catalog.quote_ident(o.rolname) ||
		', which bypasses row-level security (make it security_invoker, or give it another owner)'
	ELSE 'materialized view readable by other roles: row-level security does not apply to it'
	END
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  AND (
	(c.relkind = 'v' AND (o.rolsuper OR o.rolbypassrls)
	 AND NOT EXISTS (
		SELECT 1 FROM pg_catalog.unnest(c.reloptions) opt
		WHERE opt LIKE 'security_invoker=%' AND pg_catalog.substr(opt, 18)::bool))
	OR
	(c.relkind = 'm' AND EXISTS (
		SELECT 1 FROM pg_catalog.aclexplode(c.relacl) acl
		WHERE acl.grantee <> c.relowner AND acl.privilege_type = 'SELECT'))
  )`

func checkViews(ctx context.Context, db Querier) ([]Finding, error) {
	rows, err := db.Query(ctx, viewsSQL)
	if err != nil {
		return nil, fmt.Errorf("tenantdb: check views: %w", err)
	}
	findings, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Finding, error) {
		var f Finding
		var problem string
		err := row.Scan(&f.Schema, &f.Table, &problem)
		f.Problems = []string{problem}
		return f, err
	})
	if err != nil {
		return nil, fmt.Errorf("tenantdb: check views: %w", err)
	}
	return findings, nil
}

// tableState is what checkSQL says about one table.
type tableState struct {
	schema, table   string
	enabled, forced bool
	isolation       int      // tenant_isolation policies that are sound
	brokenIsolation []string // why a tenant_isolation policy is not sound
	widening        []string // other permissive policies: they OR with tenant_isolation
}

// CheckRLS lists every table (and partition) with a tenant_id column, in every non-system schema,
// that lacks enabled or forced row-level security or a sound tenant_isolation policy (for all
// commands, with USING and WITH CHECK on app.tenant_id), or that has another permissive policy,
// which would widen what tenant_isolation allows. It also lists views with a tenant_id column that
// read around row-level security: a view owned by a superuser (or a BYPASSRLS role) that is not
// security_invoker, and a materialized view that other roles may read. An empty list means every
// such relation is protected. Run it as any role that can connect: it reads the catalog only.
func CheckRLS(ctx context.Context, db Querier) ([]Finding, error) {
	rows, err := db.Query(ctx, checkSQL)
	if err != nil {
		return nil, fmt.Errorf("tenantdb: check rls: %w", err)
	}
	defer rows.Close()
	var tables []*tableState
	for rows.Next() {
		var (
			schema, table, polName string
			enabled, forced        bool
			cmd                    *string
			permissive             *bool
			using, check           *string
			isIsolation            bool
		)
		if err := rows.Scan(&schema, &table, &enabled, &forced, &cmd, &permissive, &using, &check,
			&isIsolation, &polName); err != nil {
			return nil, fmt.Errorf("tenantdb: check rls: %w", err)
		}
		if n := len(tables); n == 0 || tables[n-1].schema != schema || tables[n-1].table != table {
			tables = append(tables, &tableState{schema: schema, table: table, enabled: enabled, forced: forced})
		}
		t := tables[len(tables)-1]
		switch {
		case cmd == nil: // no policy at all
		case isIsolation:
			if why := isolationFlaws(*cmd, *permissive, using, check); len(why) > 0 {
				t.brokenIsolation = append(t.brokenIsolation, why...)
			} else {
				t.isolation++
			}
		case *permissive:
			t.widening = append(t.widening, polName)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tenantdb: check rls: %w", err)
	}
	var findings []Finding
	for _, t := range tables {
		if problems := t.problems(); len(problems) > 0 {
			findings = append(findings, Finding{Schema: t.schema, Table: t.table, Problems: problems})
		}
	}
	views, err := checkViews(ctx, db)
	if err != nil {
		return nil, err
	}
	findings = append(findings, views...)
	slices.SortFunc(findings, func(a, b Finding) int { return strings.Compare(a.Name(), b.Name()) })
	return findings, nil
}

func (t *tableState) problems() []string {
	var p []string
	if !t.enabled {
		p = append(p, "row-level security is not enabled")
	}
	if !t.forced {
		p = append(p, "row-level security is not forced (the owner bypasses it)")
	}
	if t.isolation == 0 {
		if len(t.brokenIsolation) > 0 {
			p = append(p, t.brokenIsolation...)
		} else {
			p = append(p, "no tenant_isolation policy")
		}
	}
	for _, name := range t.widening {
		p = append(p, fmt.Sprintf("permissive policy %q widens tenant_isolation", name))
	}
	return p
}

// isolationFlaws says why a policy named tenant_isolation does not isolate tenants.
func isolationFlaws(cmd string, permissive bool, using, check *string) []string {
	var why []string
	if cmd != "*" {
		why = append(why, "policy tenant_isolation does not cover every command (want FOR ALL)")
	}
	if !permissive {
		why = append(why, "policy tenant_isolation is restrictive (alone it allows nothing)")
	}
	if using == nil || !comparesTenant(*using) {
		why = append(why, "policy tenant_isolation has no USING comparing tenant_id with app.tenant_id")
	}
	if check == nil || !comparesTenant(*check) {
		why = append(why, "policy tenant_isolation has no WITH CHECK comparing tenant_id with app.tenant_id")
	}
	return why
}

// comparesTenant reports whether a policy expression compares tenant_id with the tenant setting,
// directly or through tenantdb.current_tenant().
func comparesTenant(expr string) bool {
	return strings.Contains(expr, "tenant_id =") &&
		(strings.Contains(expr, "'"+Setting+"'") || strings.Contains(expr, "current_tenant()"))
}
