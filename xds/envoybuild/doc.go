// Package envoybuild turns tenants and configuration into Envoy resources: the listener with its
// filter chain, one scoped route and route configuration per active tenant, and the clusters and
// endpoints they reference. Every function here is pure: no clock, no network, no globals.
package envoybuild
