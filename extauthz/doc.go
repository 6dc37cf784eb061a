// Package extauthz is Envoy's ext_authz v3 Check service: it finds the caller's credential, verifies
// the JWT against its issuer's keys (RFC 8725), decides the tenant from the registry snapshot, and
// answers with stamped tenant headers and dynamic metadata, or a denial.
package extauthz
