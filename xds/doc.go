// Package xds is tenantgate's xDS control plane: it turns the tenant registry into Envoy resources
// (through the pure builders in xds/envoybuild) and serves them over ADS, state-of-the-world and
// delta, pushing one tenant's change to every Envoy within milliseconds.
package xds
