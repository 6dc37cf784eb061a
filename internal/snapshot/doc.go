// Package snapshot holds every tenant in memory for the request path: an immutable Snapshot swapped
// atomically as the registry's change feed delivers changes, so lookups by id and by slug take no lock.
package snapshot
