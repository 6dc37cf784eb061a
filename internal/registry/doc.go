// Package registry is the tenant registry, the source of truth every part of Tenantgate shares: one
// interface with a Postgres implementation (pgx, LISTEN/NOTIFY change feed) and an in-memory one seeded
// from a YAML file, both held to the same conformance suite (registrytest).
package registry
