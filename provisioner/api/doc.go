// Package api is the provisioner's HTTP API (/v1/tenants): create with Idempotency-Key, list, get,
// change plan, suspend, resume, retry, delete. Every call needs an admin bearer token, checked by the
// ext_authz verifier; errors are RFC 9457 problem details naming the field at fault.
package api
