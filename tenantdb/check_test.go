package tenantdb_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tenantgate/tenantgate/tenantdb"
)

// TestCheckRLS_FindsUnprotectedTablesAndPassesProtectedOnes builds one table per way of getting
// protection wrong, next to protected ones, and checks the checker names exactly the wrong ones.
func TestCheckRLS_FindsUnprotectedTablesAndPassesProtectedOnes(t *testing.T) {
	t.Parallel()
	d := newTestDB(t) // notes: protected by tenantdb.Protect
	ctx := testContext(t)
	owner := connect(t, d.ownerURL)
	const isolation = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"
	for _, sql := range []string{
		// Protected, by hand rather than by Protect, in another schema, with a restrictive extra.
		"CREATE SCHEMA billing",
		"CREATE TABLE billing.invoices (id int, tenant_id uuid)",
		"ALTER TABLE billing.invoices ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON billing.invoices USING (" + isolation + ") WITH CHECK (" + isolation + ")",
		"CREATE POLICY not_archived ON billing.invoices AS RESTRICTIVE USING (id > 0)",
		// Not tenant-scoped: ignored.
		"CREATE TABLE plans (id int, name text)",
		// Left unprotected on purpose.
		"CREATE TABLE audit_log (tenant_id uuid, line text)",
		// Enabled but not forced: the owner bypasses it.
		"CREATE TABLE not_forced (tenant_id uuid)",
		"ALTER TABLE not_forced ENABLE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON not_forced USING (" + isolation + ") WITH CHECK (" + isolation + ")",
		// Forced but never enabled.
		"CREATE TABLE not_enabled (tenant_id uuid)",
		"ALTER TABLE not_enabled FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON not_enabled USING (" + isolation + ") WITH CHECK (" + isolation + ")",
		// Enabled and forced with no policy (denies everything: still not what was meant).
		"CREATE TABLE no_policy (tenant_id uuid)",
		"ALTER TABLE no_policy ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY",
		// A tenant_isolation policy that checks reads only.
		"CREATE TABLE no_check (tenant_id uuid)",
		"ALTER TABLE no_check ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY",
		"CREATE POLICY tenant_isolation ON no_check FOR SELECT USING (" + isolation + ")",
		// Protected, then widened by a second permissive policy.
		"CREATE TABLE widened (tenant_id uuid)",
		"SELECT tenantdb.protect('widened')",
		"CREATE POLICY everyone_reads ON widened FOR SELECT USING (true)",
		// A partitioned table protected by Protect, partitions included.
		"CREATE TABLE events (tenant_id uuid, at timestamptz) PARTITION BY RANGE (at)",
		"CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
		"SELECT tenantdb.protect('events')",
		// A partition added later, unprotected: queries that name it bypass the parent's policy.
		"CREATE TABLE events_2027 PARTITION OF events FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')",
	} {
		mustExec(t, owner, sql)
	}

	admin := connect(t, d.adminURL)
	for _, sql := range []string{
		// Views: fine when owned by a role that row-level security binds, or security_invoker.
		"CREATE VIEW owner_view AS SELECT tenant_id, body FROM notes",
		"ALTER VIEW owner_view OWNER TO " + d.owner,
		"CREATE VIEW invoker_view WITH (security_invoker = true) AS SELECT tenant_id, body FROM notes",
		// A view owned by a superuser reads every tenant's rows.
		"CREATE VIEW super_view AS SELECT tenant_id, body FROM notes",
		// A materialized view has no row-level security: fine only while no one else may read it.
		"CREATE MATERIALIZED VIEW private_summary AS SELECT tenant_id, count(*) FROM notes GROUP BY 1",
		"CREATE MATERIALIZED VIEW shared_summary AS SELECT tenant_id, count(*) FROM notes GROUP BY 1",
		"GRANT SELECT ON shared_summary TO " + d.app,
	} {
		mustExec(t, admin, sql)
	}

	findings, err := tenantdb.CheckRLS(ctx, connect(t, d.appURL))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range findings {
		got[f.Name()] = strings.Join(f.Problems, "; ")
	}
	want := map[string][]string{
		`"public"."audit_log"`:      {"not enabled", "not forced", "no tenant_isolation policy"},
		`"public"."not_forced"`:     {"not forced"},
		`"public"."not_enabled"`:    {"not enabled"},
		`"public"."no_policy"`:      {"no tenant_isolation policy"},
		`"public"."no_check"`:       {"FOR ALL", "WITH CHECK"},
		`"public"."widened"`:        {`"everyone_reads" widens`},
		`"public"."events_2027"`:    {"not enabled", "not forced", "no tenant_isolation policy"},
		`"public"."super_view"`:     {"view runs its query as", "security_invoker"},
		`"public"."shared_summary"`: {"materialized view readable by other roles"},
	}
	if names, wantNames := keys(got), keys(want); !reflect.DeepEqual(names, wantNames) {
		t.Fatalf("unprotected tables: got %v, want %v", got, wantNames)
	}
	for name, parts := range want {
		for _, part := range parts {
			if !strings.Contains(got[name], part) {
				t.Errorf("%s: problems %q, want one mentioning %q", name, got[name], part)
			}
		}
	}

	// Protecting them all leaves nothing to report.
	for _, sql := range []string{
		"SELECT tenantdb.protect('audit_log')", "SELECT tenantdb.protect('not_forced')",
		"SELECT tenantdb.protect('not_enabled')", "SELECT tenantdb.protect('no_policy')",
		"SELECT tenantdb.protect('no_check')", "DROP POLICY everyone_reads ON widened",
		"SELECT tenantdb.protect('events')",
	} {
		mustExec(t, owner, sql)
	}
	mustExec(t, admin, "ALTER VIEW super_view SET (security_invoker = yes)")
	mustExec(t, admin, "REVOKE SELECT ON shared_summary FROM "+d.app)
	findings, err = tenantdb.CheckRLS(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if len(findings) != 0 {
		t.Fatalf("after protecting every table: %v", findings)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
