package config

// XDS configures the xDS control plane. The xds component owns this file.
type XDS struct {
	// Debounce coalesces registry changes before a push.
	Debounce Duration `yaml:"debounce"`
}

func defaultXDS() XDS { return XDS{Debounce: Duration(10e6)} }

func (x XDS) validate(key string) error {
	if x.Debounce < 0 {
		return keyErr(key+".debounce", "must not be negative")
	}
	return nil
}
