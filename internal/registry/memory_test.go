package registry_test

import (
	"testing"

	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/registry/registrytest"
)

func TestMemory_Conformance(t *testing.T) {
	registrytest.Run(t, func(*testing.T) registry.Registry { return registry.NewMemory() })
}
