package config

// RateLimit configures the rate-limit service. The ratelimit component owns this file.
type RateLimit struct {
	// Timeout bounds every Redis call.
	Timeout Duration `yaml:"timeout"`
}

func defaultRateLimit() RateLimit { return RateLimit{Timeout: Duration(50e6)} }

func (r RateLimit) validate(key string, c *Config) error {
	if r.Timeout <= 0 {
		return keyErr(key+".timeout", "must be positive")
	}
	return nil
}
