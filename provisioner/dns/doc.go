// Package dns gives each tenant its subdomain through a small Provider: one that writes an
// external-dns DNSEndpoint object into Kubernetes, and one that only records the record in Postgres
// (for setups where DNS is a wildcard, or managed by hand from the recorded list).
package dns
