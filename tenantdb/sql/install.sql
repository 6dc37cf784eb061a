-- tenantdb: the SQL side of tenant isolation by row-level security. Idempotent: run it as the role that
-- owns the tenant-scoped tables, as often as you like (every migration run, every start-up).
-- Sent as one simple-protocol message, so it runs as one transaction; the advisory lock serialises
-- concurrent installers.
SELECT pg_catalog.pg_advisory_xact_lock(7306884455101202177);

CREATE SCHEMA IF NOT EXISTS tenantdb;
COMMENT ON SCHEMA tenantdb IS 'tenantdb: row-level security for tenant-scoped tables (app.tenant_id)';
-- Everyone may call set_tenant and current_tenant; protect is for table owners only (below).
GRANT USAGE ON SCHEMA tenantdb TO PUBLIC;

-- set_tenant scopes the current transaction to one tenant. The setting is transaction-local: it ends
-- with the transaction, committed or rolled back, and never reaches the next user of the connection.
CREATE OR REPLACE FUNCTION tenantdb.set_tenant(tenant uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	IF tenant IS NULL THEN
		RAISE EXCEPTION 'tenantdb.set_tenant: tenant is null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM pg_catalog.set_config('app.tenant_id', tenant::text, true);
END
$$;

-- current_tenant is the tenant of the current transaction, or NULL when none is set. A fresh
-- connection has no app.tenant_id at all (NULL); one that ran a transaction-local set before has the
-- empty string. Both mean "no tenant".
CREATE OR REPLACE FUNCTION tenantdb.current_tenant() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(pg_catalog.current_setting('app.tenant_id', true), '')::uuid $$;

-- protect puts a table (and its partitions) under tenant isolation: row-level security enabled and
-- forced, so the owner is bound too, and one policy, tenant_isolation, for every command. With no
-- tenant set the policy matches nothing: reads return no rows and writes are refused, never an error
-- and never every row. With app_role, the role also gets the grants it needs to use the table.
CREATE OR REPLACE FUNCTION tenantdb.protect(tbl regclass, app_role name DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	col_type regtype;
	part regclass;
	seq text;
	col name;
	tenant_expr constant text :=
		'tenant_id = NULLIF(pg_catalog.current_setting(''app.tenant_id'', true), '''')::uuid';
BEGIN
	SELECT a.atttypid::regtype INTO col_type
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped;
	IF col_type IS NULL THEN
		RAISE EXCEPTION 'tenantdb.protect: table % has no tenant_id column', tbl
			USING ERRCODE = 'undefined_column';
	END IF;
	IF col_type <> 'uuid'::regtype THEN
		RAISE EXCEPTION 'tenantdb.protect: %.tenant_id is %, want uuid', tbl, col_type
			USING ERRCODE = 'datatype_mismatch';
	END IF;

	EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
	EXECUTE pg_catalog.format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
	IF EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = tbl AND p.polname = 'tenant_isolation') THEN
		EXECUTE pg_catalog.format('DROP POLICY tenant_isolation ON %s', tbl);
	END IF;
	EXECUTE pg_catalog.format(
		'CREATE POLICY tenant_isolation ON %s AS PERMISSIVE FOR ALL TO PUBLIC USING (%s) WITH CHECK (%s)',
		tbl, tenant_expr, tenant_expr);

	IF app_role IS NOT NULL THEN
		EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO %I',
			(SELECT n.nspname FROM pg_catalog.pg_class c
			 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl),
			app_role);
		EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO %I', tbl, app_role);
		FOR col IN
			SELECT a.attname FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
		LOOP
			seq := pg_catalog.pg_get_serial_sequence(tbl::text, col);
			IF seq IS NOT NULL THEN
				EXECUTE pg_catalog.format('GRANT USAGE, SELECT ON SEQUENCE %s TO %I', seq, app_role);
			END IF;
		END LOOP;
	END IF;

	-- Queries may name a partition directly, and a parent's policies do not apply then.
	FOR part IN SELECT i.inhrelid::regclass FROM pg_catalog.pg_inherits i WHERE i.inhparent = tbl LOOP
		PERFORM tenantdb.protect(part, app_role);
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION tenantdb.protect(regclass, name) FROM PUBLIC;
