package config

import (
	"net"
	"net/url"
	"strings"
)

// Telemetry configures what the process tells operators beyond its logs: OpenTelemetry traces (off
// unless an endpoint is set) and the opt-in per-tenant view of the metrics. The telemetry package
// owns this file.
type Telemetry struct {
	Tracing Tracing          `yaml:"tracing"`
	Metrics TelemetryMetrics `yaml:"metrics"`
}

// Tracing configures the OTLP trace exporter.
type Tracing struct {
	// Endpoint is the OTLP/gRPC collector, host:port or http(s)://host:port. Empty: no traces are
	// exported (incoming trace context is still passed on in logs).
	Endpoint string `yaml:"endpoint"`
	// Insecure sends spans without TLS (a collector on the same node or in the same pod).
	Insecure bool `yaml:"insecure"`
	// SampleRatio is the share of new traces recorded, 0 to 1. A request whose caller (Envoy)
	// already decided follows that decision.
	SampleRatio float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name resource attribute of every span.
	ServiceName string `yaml:"service_name"`
	// Headers are sent with every export (such as an API key of a hosted collector).
	Headers map[string]Secret `yaml:"headers"`
}

// TelemetryMetrics configures the optional metrics.
type TelemetryMetrics struct {
	// TopTenants, when above zero, adds tenantgate_top_tenant_requests with a tenant_id label for the
	// that many busiest tenants (an estimate, memory bounded). Zero: no series carries a tenant id.
	TopTenants int `yaml:"top_tenants"`
}

// Enabled reports whether spans are exported.
func (t Tracing) Enabled() bool { return t.Endpoint != "" }

// maxTopTenants bounds the opt-in per-tenant series.
const maxTopTenants = 1000

func defaultTelemetry() Telemetry {
	return Telemetry{
		Tracing: Tracing{SampleRatio: 0.01, ServiceName: "tenantgate"},
	}
}

func (t Telemetry) validate(key string) error {
	tr := t.Tracing
	switch {
	case tr.SampleRatio < 0 || tr.SampleRatio > 1:
		return keyErr(key+".tracing.sample_ratio", "must be between 0 and 1 (got %g)", tr.SampleRatio)
	case strings.TrimSpace(tr.ServiceName) == "":
		return keyErr(key+".tracing.service_name", "must not be empty")
	case t.Metrics.TopTenants < 0 || t.Metrics.TopTenants > maxTopTenants:
		return keyErr(key+".metrics.top_tenants", "must be between 0 and %d (got %d)", maxTopTenants, t.Metrics.TopTenants)
	}
	if tr.Endpoint != "" {
		if strings.Contains(tr.Endpoint, "://") {
			u, err := url.Parse(tr.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return keyErr(key+".tracing.endpoint", "must be host:port or an http(s) URL (got %q)", tr.Endpoint)
			}
		} else if _, _, err := net.SplitHostPort(tr.Endpoint); err != nil {
			return keyErr(key+".tracing.endpoint", "must be host:port or an http(s) URL (got %q)", tr.Endpoint)
		}
	}
	for name := range tr.Headers {
		if strings.TrimSpace(name) == "" || strings.ContainsAny(name, " :\r\n") {
			return keyErr(key+".tracing.headers", "header name %q is not valid", name)
		}
	}
	return nil
}
