// Package ratelimit is Envoy's rate-limit service (envoy.service.ratelimit.v3) for Tenantgate: per-plan
// sliding windows that never over-admit, kept in Redis (single or cluster) or in memory, with a local
// over-limit cache, per-plan failure modes and a circuit breaker around the store.
package ratelimit
