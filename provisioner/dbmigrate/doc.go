// Package dbmigrate applies a set of embedded goose migrations to one Postgres schema, with the
// schema's own version table and an advisory lock, so the provisioner's state and every tenant
// schema migrate independently of the registry's migrations and of each other.
package dbmigrate
