package registry

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// Schema is the Postgres schema that holds the registry and its migration history.
const Schema = "tenantgate"

// migrationTable is goose's version table, kept inside Schema with the tables it describes.
const migrationTable = Schema + ".goose_db_version"

// Advisory lock keys: arbitrary constants, one per purpose, distinct from goose's default key so that
// another goose-migrated application in the same database does not wait on ours.
const (
	// migrateLockKey serializes migrations across replicas (a session lock held by goose).
	migrateLockKey int64 = 0x5f1c6b0e2d8a4c31
	// schemaLockKey serializes the creation of the schema (a transaction lock).
	schemaLockKey int64 = 0x2b7e9d4a1f3c5e07
	// revisionLockKey serializes registry writes, so revisions commit in order (see Postgres).
	revisionLockKey int64 = 0x7a3d1c9e5b2f4068
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Applied []int64 // versions applied by this call, in order (empty when already up to date)
	Version int64   // the schema version after the call
}

// Migrate brings the registry schema in the database at databaseURL up to date with the migrations
// embedded in the binary. It is safe to run from many replicas at once: the migrations run under a
// Postgres session advisory lock, so one replica applies them while the others wait, then find
// nothing left to do. log may be nil.
func Migrate(ctx context.Context, databaseURL string, log *slog.Logger) (MigrateResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	connCfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: parse database url: %w", err)
	}
	connCfg.RuntimeParams["application_name"] = "tenantgate-migrate"
	db := stdlib.OpenDB(*connCfg)
	defer db.Close()

	if err := createSchema(ctx, db); err != nil {
		return MigrateResult{}, err
	}
	p, err := newMigrationProvider(db)
	if err != nil {
		return MigrateResult{}, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: %w", err)
	}
	var res MigrateResult
	for _, r := range results {
		res.Applied = append(res.Applied, r.Source.Version)
		log.Info("registry migration applied", slog.Int64("version", r.Source.Version),
			slog.String("file", r.Source.Path), slog.Duration("took", r.Duration))
	}
	if res.Version, err = p.GetDBVersion(ctx); err != nil {
		return MigrateResult{}, fmt.Errorf("migrate: read schema version: %w", err)
	}
	return res, nil
}

// newMigrationProvider returns the goose provider of the embedded migrations on db.
func newMigrationProvider(db *sql.DB) (*goose.Provider, error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("migrate: embedded migrations: %w", err)
	}
	// The lock is polled every second for up to ten minutes: long enough for another replica's
	// migrations, short enough that a stuck one is reported.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(migrateLockKey), lock.WithLockTimeout(1, 600))
	if err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, files,
		goose.WithTableName(migrationTable),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return p, nil
}

// createSchema creates the registry's schema, which must exist before goose creates its version table
// in it. Two concurrent CREATE SCHEMA IF NOT EXISTS can both miss the schema and one then fails on
// the catalog's unique index, so replicas take turns under a transaction advisory lock.
func createSchema(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	// Checked first because CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege even when the
	// schema exists, and a role that owns the schema may lack it on the database.
	var exists bool
	if err := tx.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", Schema).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "CREATE SCHEMA "+pgx.Identifier{Schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: create schema: %w", err)
	}
	return nil
}
