// Package envoy holds Tenantgate's ready-to-use Envoy configurations (gateway.yaml, sidecar.yaml) and
// the tests that prove them: every file here, every bootstrap `tenantgate bootstrap` writes and every
// Envoy config in the Helm chart passes deep validation, and a broken fixture of each kind does not.
package envoy
