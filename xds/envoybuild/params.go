package envoybuild

import (
	"github.com/tenantgate/tenantgate/internal/config"
)

// Params is everything the builders need besides the tenants.
type Params struct {
	// BaseDomain: tenant hosts are <slug>.<BaseDomain>.
	BaseDomain string
	XDS        config.XDS
}

// ParamsFrom takes the builder parameters from a validated configuration.
func ParamsFrom(cfg *config.Config) Params {
	return Params{BaseDomain: cfg.BaseDomain, XDS: cfg.XDS}
}
