// Package xdsfetch reads the configuration an xDS server gives an Envoy: one state-of-the-world ADS
// stream, full state of the wildcard types, then the routes and endpoints they name. `tenantgate
// explain` and the end-to-end tests use it to see exactly what Envoy would see.
package xdsfetch
