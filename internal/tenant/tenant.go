package tenant

import (
	"time"
)

// Model is how a tenant's data is isolated.
type Model string

// The tenancy models.
const (
	// Silo: a dedicated database server (and usually dedicated compute).
	Silo Model = "silo"
	// Bridge: its own database on the shared tenant database server.
	Bridge Model = "bridge"
	// Pool: rows in the shared database, isolated by row-level security.
	Pool Model = "pool"
	// Namespace: its own schema in the shared database.
	Namespace Model = "namespace"
)

// Models lists every tenancy model, in a stable order.
var Models = []Model{Silo, Bridge, Pool, Namespace}

// Valid reports whether m is one of the tenancy models.
func (m Model) Valid() bool {
	switch m {
	case Silo, Bridge, Pool, Namespace:
		return true
	}
	return false
}

// Tenant is one customer, as the registry stores it.
type Tenant struct {
	ID     string // UUID v4, made by NewID, never reused
	Slug   string // DNS label, unique forever
	Name   string
	Plan   string
	Model  Model
	Status Status

	// Upstream is where the tenant's traffic goes. Empty for pool and namespace tenants that use the
	// shared pool upstream.
	Upstream Upstream
	// Resources records what provisioning made for the tenant.
	Resources Resources

	LastError string

	// Revision is the registry revision of the tenant's latest change. It orders the change feed and
	// is the optimistic-concurrency token: an update must carry the revision it read.
	Revision int64

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Upstream is a tenant's own upstream cluster (silo and bridge tenants).
type Upstream struct {
	Cluster   string     `json:"cluster,omitempty" yaml:"cluster,omitempty"`
	Endpoints []Endpoint `json:"endpoints,omitempty" yaml:"endpoints,omitempty"`
}

// IsZero reports whether no upstream is set.
func (u Upstream) IsZero() bool { return u.Cluster == "" && len(u.Endpoints) == 0 }

// Endpoint is one address of an upstream.
type Endpoint struct {
	Host string `json:"host" yaml:"host"`
	Port uint32 `json:"port" yaml:"port"`
}

// Resources are the things provisioned for a tenant.
type Resources struct {
	Database  string `json:"database,omitempty" yaml:"database,omitempty"`
	Schema    string `json:"schema,omitempty" yaml:"schema,omitempty"`
	Namespace string `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Domain    string `json:"domain,omitempty" yaml:"domain,omitempty"`
}
