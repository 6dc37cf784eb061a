// Package tenant is the tenant model every part of Tenantgate shares: the fields of a tenant, its
// tenancy model and status, the one place where status transitions are decided, and the rules for
// ids and slugs.
package tenant
