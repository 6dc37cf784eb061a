// Package saga runs durable sagas: ordered steps with do and undo, their state in Postgres written
// before and after every step, claimed by one replica at a time through SKIP LOCKED leases with
// heartbeats, resumed or compensated after a crash, retried with backoff before giving up.
package saga
