package config

import (
	"testing"
)

func TestLoad_XDSSectionOverDefaults(t *testing.T) {
	p := writeConfig(t, `
xds:
  debounce: 5ms
  max_delay: 50ms
  listener: {port: 8443}
  pool: {endpoints: ["app.default.svc:8080", "10.0.0.7:8080"]}
  authz: {address: "tenantgate-sidecar:9001"}
  routes:
    - {name: api, prefix: /api/}
    - {name: web, prefix: /, timeout: 30s}
`)
	cfg, err := Load(p, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	x := cfg.XDS
	if x.Debounce.D().Milliseconds() != 5 || x.MaxDelay.D().Milliseconds() != 50 {
		t.Errorf("debounce/max_delay = %s/%s", x.Debounce.D(), x.MaxDelay.D())
	}
	if x.Listener.Port != 8443 || x.Listener.Address != "0.0.0.0" {
		t.Errorf("listener = %+v, want port 8443 on the default address", x.Listener)
	}
	if len(x.Pool.Endpoints) != 2 || x.Authz.Address != "tenantgate-sidecar:9001" || x.RateLimit.Address != "127.0.0.1:9001" {
		t.Errorf("pool/authz/ratelimit = %+v %+v %+v", x.Pool, x.Authz, x.RateLimit)
	}
	if x.Authz.Timeout <= 0 {
		t.Errorf("authz timeout lost its default when only the address was set")
	}
	if len(x.Routes) != 2 || x.Routes[0].Name != "api" {
		t.Errorf("routes = %+v", x.Routes)
	}
}

func TestLoad_XDSMistakesNameTheirKey(t *testing.T) {
	tests := []struct {
		name, body, key string
	}{
		{"negative debounce", "xds: {debounce: -1s}", "xds.debounce"},
		{"max delay below debounce", "xds: {debounce: 1s, max_delay: 10ms}", "xds.max_delay"},
		{"zero nack backoff", "xds: {nack_backoff: 0s}", "xds.nack_backoff"},
		{"backoff max below backoff", "xds: {nack_backoff: 10s, nack_backoff_max: 1s}", "xds.nack_backoff_max"},
		{"tiny grpc messages", "xds: {max_message_bytes: 1024}", "xds.max_message_bytes"},
		{"listener address not an ip", "xds: {listener: {address: anywhere}}", "xds.listener.address"},
		{"listener port too big", "xds: {listener: {port: 70000}}", "xds.listener.port"},
		{"no pool endpoints", "xds: {pool: {endpoints: []}}", "xds.pool.endpoints"},
		{"pool endpoint without port", "xds: {pool: {endpoints: [\"app\"]}}", "xds.pool.endpoints[0]"},
		{"authz address without port", "xds: {authz: {address: sidecar}}", "xds.authz.address"},
		{"ratelimit port zero", "xds: {ratelimit: {address: \"127.0.0.1:0\"}}", "xds.ratelimit.address"},
		{"no routes", "xds: {routes: []}", "xds.routes"},
		{"route prefix without slash", "xds: {routes: [{name: api, prefix: api}]}", "xds.routes[0].prefix"},
		{"duplicate route name", "xds: {routes: [{name: a, prefix: /a}, {name: a, prefix: /b}]}", "xds.routes[1].name"},
		{"upper-case authz header", "xds: {authz_headers: [Authorization]}", "xds.authz_headers[0]"},
		{"unknown key", "xds: {listner: {port: 1}}", "xds.listner"},
		{"empty node cluster", "xds: {node: {cluster: \"\"}}", "xds.node.cluster"},
		{"route open to an unknown plan", "xds: {routes: [{name: api, prefix: /, plans: [gold]}]}", "xds.routes[0].plans[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { expectKeyError(t, tt.body, tt.key, "") })
	}
}
