package tenantdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// AppRole is the role the application's request path connects as. It owns nothing and cannot bypass
// row-level security, so the tenant_isolation policies always apply to it.
type AppRole struct {
	Name  string // the role name
	Login bool   // LOGIN (connect as it directly) or NOLOGIN (granted to login roles)
}

// Validate reports a role name Postgres would refuse or truncate.
func (r AppRole) Validate() error {
	if r.Name == "" || len(r.Name) > 63 {
		return fmt.Errorf("tenantdb: app role: name must be 1 to 63 bytes, got %q", r.Name)
	}
	return nil
}

// ErrUnsafeRole is returned, wrapped, when the application role could read across tenants: it is a
// superuser, bypasses row-level security, or owns objects in the database.
var ErrUnsafeRole = errors.New("tenantdb: unsafe application role")

// EnsureAppRole creates the application role if it does not exist (NOSUPERUSER NOBYPASSRLS
// NOCREATEDB NOCREATEROLE NOREPLICATION, LOGIN as asked) and corrects LOGIN if it does. It refuses,
// with ErrUnsafeRole, a role that exists and is a superuser, bypasses row-level security or owns
// anything in the current database. It needs the CREATEROLE privilege. Grant the role its tables
// with Protect.
func EnsureAppRole(ctx context.Context, db DB, r AppRole) error {
	if err := r.Validate(); err != nil {
		return err
	}
	login := "NOLOGIN"
	if r.Login {
		login = "LOGIN"
	}
	name := pgx.Identifier{r.Name}.Sanitize()
	exists, err := roleExists(ctx, db, r.Name)
	if err != nil {
		return err
	}
	if !exists {
		_, err := db.Exec(ctx, "CREATE ROLE "+name+" "+login+
			" NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION INHERIT")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created meanwhile by someone else
			err = nil
		}
		if err != nil {
			return fmt.Errorf("tenantdb: create role %s: %w", r.Name, err)
		}
	}
	problems, err := RoleProblems(ctx, db, r.Name)
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w %s: %v", ErrUnsafeRole, r.Name, problems)
	}
	if _, err := db.Exec(ctx, "ALTER ROLE "+name+" "+login); err != nil {
		return fmt.Errorf("tenantdb: alter role %s: %w", r.Name, err)
	}
	return nil
}

func roleExists(ctx context.Context, q Querier, name string) (bool, error) {
	rows, err := q.Query(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", name)
	if err != nil {
		return false, fmt.Errorf("tenantdb: look up role %s: %w", name, err)
	}
	exists, err := pgx.CollectExactlyOneRow(rows, pgx.RowTo[bool])
	if err != nil {
		return false, fmt.Errorf("tenantdb: look up role %s: %w", name, err)
	}
	return exists, nil
}

// roleProblemsSQL lists why a role could read across tenants: superuser, BYPASSRLS, ownership of
// objects in the current database (an owner can disable row-level security on its tables), and
// membership of a role that is any of these (a member can SET ROLE to it).
const roleProblemsSQL = `
WITH RECURSIVE r AS (
	SELECT oid, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = $1
), reachable AS (
	SELECT oid FROM r
	UNION
	SELECT m.roleid FROM pg_catalog.pg_auth_members m JOIN reachable ON m.member = reachable.oid
)
SELECT 'superuser' FROM r WHERE rolsuper
UNION ALL
SELECT 'bypasses row-level security' FROM r WHERE rolbypassrls
UNION ALL
SELECT 'member of ' || p.rolname || ', which is superuser or bypasses row-level security'
FROM reachable JOIN pg_catalog.pg_roles p ON p.oid = reachable.oid
WHERE p.oid <> (SELECT oid FROM r) AND (p.rolsuper OR p.rolbypassrls)
UNION ALL
SELECT CASE WHEN p.oid = (SELECT oid FROM r) THEN 'owns ' ELSE 'member of ' || p.rolname || ', which owns ' END
	|| count(*) || ' objects in this database'
FROM pg_catalog.pg_shdepend d JOIN pg_catalog.pg_roles p ON p.oid = d.refobjid
WHERE d.deptype = 'o' AND d.refclassid = 'pg_catalog.pg_authid'::regclass
  AND d.refobjid IN (SELECT oid FROM reachable)
  AND d.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
GROUP BY p.oid, p.rolname`

// RoleProblems lists why the named role could read across tenants, empty if it cannot. A role that
// does not exist is a problem too.
func RoleProblems(ctx context.Context, q Querier, name string) ([]string, error) {
	exists, err := roleExists(ctx, q, name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return []string{"does not exist"}, nil
	}
	rows, err := q.Query(ctx, roleProblemsSQL, name)
	if err != nil {
		return nil, fmt.Errorf("tenantdb: check role %s: %w", name, err)
	}
	problems, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("tenantdb: check role %s: %w", name, err)
	}
	return problems, nil
}
