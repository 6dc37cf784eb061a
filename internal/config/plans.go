package config

import (
	"fmt"
	"time"
)

// Plan is what a tenant on the plan may use: rate-limit windows (each applying per tenant and
// endpoint), optional per-endpoint overrides, and what to do when Redis fails.
type Plan struct {
	Windows []Window `yaml:"windows"`
	// Endpoints overrides the windows for named endpoints (route names).
	Endpoints map[string][]Window `yaml:"endpoints"`
	// FailureMode is open (allow and count) or closed (deny) when the rate-limit store fails.
	FailureMode string `yaml:"failure_mode"`
}

// Window is one sliding window: at most Limit requests in any interval of length Period.
type Window struct {
	Limit  int64    `yaml:"limit"`
	Period Duration `yaml:"period"`
}

// DefaultPlans are the plans of DESIGN.md: per tenant and endpoint, per hour.
func DefaultPlans() map[string]Plan {
	hourly := func(limit int64) Plan {
		return Plan{Windows: []Window{{Limit: limit, Period: Duration(time.Hour)}}, FailureMode: "open"}
	}
	return map[string]Plan{
		"free":         hourly(100),
		"starter":      hourly(1000),
		"professional": hourly(10000),
		"enterprise":   hourly(100000),
	}
}

func (p Plan) validate(key string) error {
	if len(p.Windows) == 0 {
		return keyErr(key+".windows", "at least one window is required")
	}
	if err := validateWindows(key+".windows", p.Windows); err != nil {
		return err
	}
	for _, ep := range sortedKeys(p.Endpoints) {
		if ep == "" {
			return keyErr(key+".endpoints", "endpoint names must not be empty")
		}
		if len(p.Endpoints[ep]) == 0 {
			return keyErr(key+".endpoints."+ep, "at least one window is required")
		}
		if err := validateWindows(key+".endpoints."+ep, p.Endpoints[ep]); err != nil {
			return err
		}
	}
	switch p.FailureMode {
	case "open", "closed":
	default:
		return keyErr(key+".failure_mode", "must be open or closed (got %q)", p.FailureMode)
	}
	return nil
}

func validateWindows(key string, ws []Window) error {
	for i, w := range ws {
		k := fmt.Sprintf("%s[%d]", key, i)
		if w.Limit <= 0 {
			return keyErr(k+".limit", "must be a positive whole number")
		}
		if w.Period.D() < 100*time.Millisecond || w.Period.D()%time.Millisecond != 0 {
			return keyErr(k+".period", "must be at least 100ms, in whole milliseconds")
		}
	}
	return nil
}
