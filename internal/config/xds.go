package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// XDS configures the xDS control plane and the Envoy configuration it builds. The xds component owns
// this file. Tenant hosts are <slug>.<base_domain> (the top-level base_domain).
type XDS struct {
	// Debounce is how long the registry must be quiet before a push; MaxDelay bounds how long a push
	// may wait under a steady stream of changes.
	Debounce Duration `yaml:"debounce"`
	MaxDelay Duration `yaml:"max_delay"`
	// NACKBackoff is the first pause after an Envoy rejects a config; it doubles per rejection up to
	// NACKBackoffMax and resets when the Envoy accepts one.
	NACKBackoff    Duration `yaml:"nack_backoff"`
	NACKBackoffMax Duration `yaml:"nack_backoff_max"`
	// MaxMessageBytes bounds one gRPC message from an Envoy (a reconnecting Envoy's request names
	// every resource it holds). Responses are not bounded: a new Envoy's first one holds every tenant.
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// Keepalive is the interval of server pings on idle ADS connections.
	Keepalive Duration `yaml:"keepalive"`

	// Listener is the Envoy listener that takes tenant traffic.
	Listener XDSListener `yaml:"listener"`
	// Pool is the shared upstream of pool and namespace tenants (and of silo and bridge tenants
	// without an upstream of their own).
	Pool XDSUpstream `yaml:"pool"`
	// Authz and RateLimit are where Envoy reaches ext_authz and the rate-limit service: by default the
	// tenantgate sidecar on 127.0.0.1:9001.
	Authz     XDSService `yaml:"authz"`
	RateLimit XDSService `yaml:"ratelimit"`
	// Routes is the routing layout every tenant gets; each route's name is the rate-limit endpoint.
	Routes []XDSRoute `yaml:"routes"`
	// AuthzHeaders are the only request headers sent to ext_authz.
	AuthzHeaders []string `yaml:"authz_headers"`
	// ConnectTimeout applies to every upstream cluster.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// Node holds the defaults of `tenantgate bootstrap`.
	Node XDSNode `yaml:"node"`
}

// XDSListener is the tenant traffic listener.
type XDSListener struct {
	Address string `yaml:"address"`
	Port    uint32 `yaml:"port"`
}

// XDSUpstream is a cluster's endpoints, each host:port.
type XDSUpstream struct {
	Endpoints []string `yaml:"endpoints"`
}

// XDSService is an infrastructure gRPC service Envoy calls.
type XDSService struct {
	Address string   `yaml:"address"`
	Timeout Duration `yaml:"timeout"`
}

// XDSRoute is one route of the routing layout.
type XDSRoute struct {
	Name    string   `yaml:"name"`
	Prefix  string   `yaml:"prefix"`
	Timeout Duration `yaml:"timeout"`
	// Plans, when set, are the only plans whose tenants may use the route (ext_authz denies others).
	Plans []string `yaml:"plans"`
}

// XDSNode holds the bootstrap defaults: the Envoy node cluster and the admin port.
type XDSNode struct {
	Cluster   string `yaml:"cluster"`
	AdminPort uint32 `yaml:"admin_port"`
}

func defaultXDS() XDS {
	return XDS{
		Debounce:        Duration(10e6),
		MaxDelay:        Duration(100e6),
		NACKBackoff:     Duration(1e9),
		NACKBackoffMax:  Duration(60e9),
		MaxMessageBytes: 64 << 20,
		Keepalive:       Duration(30e9),
		Listener:        XDSListener{Address: "0.0.0.0", Port: 10000},
		Pool:            XDSUpstream{Endpoints: []string{"127.0.0.1:8000"}},
		Authz:           XDSService{Address: "127.0.0.1:9001", Timeout: Duration(250e6)},
		RateLimit:       XDSService{Address: "127.0.0.1:9001", Timeout: Duration(100e6)},
		Routes:          []XDSRoute{{Name: "default", Prefix: "/", Timeout: Duration(15e9)}},
		AuthzHeaders:    []string{"authorization", "cookie"},
		ConnectTimeout:  Duration(2e9),
		Node:            XDSNode{Cluster: "tenantgate", AdminPort: 9901},
	}
}

func (x XDS) validate(key string, c *Config) error {
	switch {
	case x.Debounce < 0:
		return keyErr(key+".debounce", "must not be negative")
	case x.MaxDelay < x.Debounce:
		return keyErr(key+".max_delay", "must be at least the debounce (%s)", x.Debounce.D())
	case x.NACKBackoff <= 0:
		return keyErr(key+".nack_backoff", "must be positive")
	case x.NACKBackoffMax < x.NACKBackoff:
		return keyErr(key+".nack_backoff_max", "must be at least nack_backoff (%s)", x.NACKBackoff.D())
	case x.MaxMessageBytes < 4<<20:
		return keyErr(key+".max_message_bytes", "must be at least 4194304 (gRPC's default)")
	case x.Keepalive <= 0:
		return keyErr(key+".keepalive", "must be positive")
	case x.ConnectTimeout <= 0:
		return keyErr(key+".connect_timeout", "must be positive")
	}
	if net.ParseIP(x.Listener.Address) == nil {
		return keyErr(key+".listener.address", "must be an IP address such as 0.0.0.0 (got %q)", x.Listener.Address)
	}
	if x.Listener.Port == 0 || x.Listener.Port > 65535 {
		return keyErr(key+".listener.port", "must be from 1 to 65535")
	}
	if len(x.Pool.Endpoints) == 0 {
		return keyErr(key+".pool.endpoints", "at least one host:port is required")
	}
	for i, ep := range x.Pool.Endpoints {
		if _, _, err := SplitEndpoint(ep); err != nil {
			return keyErr(fmt.Sprintf("%s.pool.endpoints[%d]", key, i), "%v", err)
		}
	}
	for name, svc := range map[string]XDSService{"authz": x.Authz, "ratelimit": x.RateLimit} {
		if _, _, err := SplitEndpoint(svc.Address); err != nil {
			return keyErr(key+"."+name+".address", "%v", err)
		}
		if svc.Timeout <= 0 {
			return keyErr(key+"."+name+".timeout", "must be positive")
		}
	}
	if err := validateRoutes(key+".routes", x.Routes, c.KnownPlan); err != nil {
		return err
	}
	if len(x.AuthzHeaders) == 0 {
		return keyErr(key+".authz_headers", "at least one header is required (the one carrying the token)")
	}
	for i, h := range x.AuthzHeaders {
		if h == "" || h != strings.ToLower(h) || strings.ContainsAny(h, " :") {
			return keyErr(fmt.Sprintf("%s.authz_headers[%d]", key, i), "must be a lower-case header name (got %q)", h)
		}
	}
	if x.Node.Cluster == "" {
		return keyErr(key+".node.cluster", "is required")
	}
	if x.Node.AdminPort == 0 || x.Node.AdminPort > 65535 {
		return keyErr(key+".node.admin_port", "must be from 1 to 65535")
	}
	return nil
}

func validateRoutes(key string, routes []XDSRoute, knownPlan func(string) bool) error {
	if len(routes) == 0 {
		return keyErr(key, "at least one route is required")
	}
	names := map[string]bool{}
	prefixes := map[string]bool{}
	for i, r := range routes {
		at := fmt.Sprintf("%s[%d]", key, i)
		if r.Name == "" || strings.ContainsAny(r.Name, " /") {
			return keyErr(at+".name", "must be a non-empty name without spaces or slashes (got %q)", r.Name)
		}
		if names[r.Name] {
			return keyErr(at+".name", "duplicate route name %q", r.Name)
		}
		if !strings.HasPrefix(r.Prefix, "/") {
			return keyErr(at+".prefix", "must start with / (got %q)", r.Prefix)
		}
		if prefixes[r.Prefix] {
			return keyErr(at+".prefix", "duplicate prefix %q", r.Prefix)
		}
		if r.Timeout < 0 {
			return keyErr(at+".timeout", "must not be negative")
		}
		for j, plan := range r.Plans {
			if !knownPlan(plan) {
				return keyErr(fmt.Sprintf("%s.plans[%d]", at, j), "unknown plan %q", plan)
			}
		}
		names[r.Name], prefixes[r.Prefix] = true, true
	}
	return nil
}

// SplitEndpoint parses host:port with a port from 1 to 65535.
func SplitEndpoint(hostport string) (string, uint32, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil || host == "" {
		return "", 0, fmt.Errorf("must be host:port such as 127.0.0.1:9001 (got %q)", hostport)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("port must be from 1 to 65535 (got %q)", portStr)
	}
	return host, uint32(port), nil
}
