// Package registrytest is the conformance suite every registry.Registry implementation must pass:
// lookups, validation, the status lifecycle, optimistic concurrency, tombstones that keep ids and slugs
// from reuse, paging, and the change feed. Call Run from the implementation's tests.
package registrytest
