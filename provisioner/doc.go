// Package provisioner onboards and offboards tenants as durable sagas (package saga, steps in package
// steps): create, change plan, suspend, resume, retry and delete, with Idempotency-Key handling. The
// HTTP API over it lives in package api.
package provisioner
