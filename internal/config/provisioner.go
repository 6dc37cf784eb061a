package config

// Provisioner configures tenant provisioning. The provisioner component owns this file.
type Provisioner struct {
}

func defaultProvisioner() Provisioner { return Provisioner{} }

func (p Provisioner) validate(key string, c *Config) error { return nil }
