package dbmigrate

import (
	"context"
	"fmt"
	"hash/fnv"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Up creates schema if needed and applies the migrations in fsys to it, with search_path set to the
// schema so that the migrations name their tables unqualified. Replicas (and sagas) migrating the
// same schema at once take turns under an advisory lock derived from the database and schema name.
// It returns the schema version afterwards.
func Up(ctx context.Context, connCfg *pgx.ConnConfig, schema string, fsys fs.FS) (int64, error) {
	cfg := connCfg.Copy()
	cfg.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "tenantgate-provisioner"
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()

	key := lockKey(cfg.Database, schema)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("migrate %s: %w", schema, err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", key); err != nil {
		return 0, fmt.Errorf("migrate %s: lock: %w", schema, err)
	}
	if _, err := tx.ExecContext(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return 0, fmt.Errorf("migrate %s: create schema: %w", schema, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("migrate %s: create schema: %w", schema, err)
	}

	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(key), lock.WithLockTimeout(1, 600))
	if err != nil {
		return 0, fmt.Errorf("migrate %s: lock: %w", schema, err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys,
		goose.WithTableName(schema+".goose_db_version"),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return 0, fmt.Errorf("migrate %s: %w", schema, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return 0, fmt.Errorf("migrate %s: %w", schema, err)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate %s: read version: %w", schema, err)
	}
	return v, nil
}

// lockKey is a stable advisory lock key per database and schema.
func lockKey(database, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("tenantgate-migrate\x00" + database + "\x00" + schema))
	return int64(h.Sum64() &^ (1 << 63))
}
