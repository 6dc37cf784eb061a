package registry

// TenantColumns is the select list the registry reads tenants with, for the load benchmark's baseline.
const TenantColumns = tenantColumns
