// Package e2e runs the real tenantgate binary as separate processes (a control plane and two
// sidecars) against real Postgres and Redis, an HTTPS JWKS server and an SMTP server, and drives them
// only through their public interfaces, speaking Envoy's exact protos.
package e2e
