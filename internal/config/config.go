package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Components are the parts `tenantgate serve` can run.
var Components = []string{"authz", "ratelimit", "xds", "provisioner"}

// Config is the whole configuration of one tenantgate process.
type Config struct {
	Listen Listen `yaml:"listen"`
	// DatabaseURL is the registry's Postgres (also TENANTGATE_DATABASE_URL). Empty: the embedded
	// in-memory registry seeded from TenantsFile.
	DatabaseURL Secret `yaml:"database_url"`
	// RedisURL is the rate limiter's Redis (also TENANTGATE_REDIS_URL). Empty: the in-memory store.
	RedisURL Secret `yaml:"redis_url"`
	// TenantsFile seeds the in-memory registry.
	TenantsFile string `yaml:"tenants_file"`
	// BaseDomain: tenant hosts are <slug>.<base_domain>.
	BaseDomain string `yaml:"base_domain"`
	// Components to run; empty means all.
	Components      []string `yaml:"components"`
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	Log             Log      `yaml:"log"`
	// Plans by name. A tenant's plan must be one of these.
	Plans map[string]Plan `yaml:"plans"`

	Authz       Authz       `yaml:"authz"`
	RateLimit   RateLimit   `yaml:"ratelimit"`
	XDS         XDS         `yaml:"xds"`
	Provisioner Provisioner `yaml:"provisioner"`
	Telemetry   Telemetry   `yaml:"telemetry"`
}

// Listen holds every listen address.
type Listen struct {
	GRPC  string `yaml:"grpc"`  // ext_authz, rate limit, health
	XDS   string `yaml:"xds"`   // ADS
	HTTP  string `yaml:"http"`  // provisioner API
	Admin string `yaml:"admin"` // metrics, health, readiness
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Default returns the configuration used where the file and environment say nothing. Every default
// lives here.
func Default() Config {
	return Config{
		Listen: Listen{
			GRPC:  ":9001",
			XDS:   ":18000",
			HTTP:  ":8080",
			Admin: ":9090",
		},
		TenantsFile:     "examples/tenants.yaml",
		BaseDomain:      "tenants.localhost",
		ShutdownTimeout: Duration(15e9),
		Log:             Log{Level: "info", Format: "text"},
		Plans:           DefaultPlans(),
		Authz:           defaultAuthz(),
		RateLimit:       defaultRateLimit(),
		XDS:             defaultXDS(),
		Provisioner:     defaultProvisioner(),
		Telemetry:       defaultTelemetry(),
	}
}

// Load reads the file at path (none if path is empty) over the defaults, applies the environment and
// validates the result. getenv is os.Getenv in production.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		// Plans named in the file replace the default plans as a whole, so a file that lists its
		// plans gets exactly those.
		if hasTopLevelKey(data, "plans") {
			cfg.Plans = nil
		}
		if err := decodeInto(data, &cfg); err != nil {
			return Config{}, err
		}
	}
	for name, p := range cfg.Plans {
		if p.FailureMode == "" {
			p.FailureMode = "open"
			cfg.Plans[name] = p
		}
	}
	if v := getenv("TENANTGATE_DATABASE_URL"); v != "" {
		cfg.DatabaseURL = Secret(v)
	}
	if v := getenv("TENANTGATE_REDIS_URL"); v != "" {
		cfg.RedisURL = Secret(v)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

func hasTopLevelKey(data []byte, key string) bool {
	var top map[string]yaml.Node
	if yaml.Unmarshal(data, &top) != nil {
		return false
	}
	_, ok := top[key]
	return ok
}

// Validate checks every value and returns the first problem as a *KeyError naming its key.
func (c *Config) Validate() error {
	for key, addr := range map[string]string{
		"listen.grpc": c.Listen.GRPC, "listen.xds": c.Listen.XDS,
		"listen.http": c.Listen.HTTP, "listen.admin": c.Listen.Admin,
	} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return keyErr(key, "must be host:port, such as :9001 (got %q)", addr)
		}
	}
	if err := checkURL("database_url", string(c.DatabaseURL), "postgres", "postgresql"); err != nil {
		return err
	}
	if err := checkURL("redis_url", string(c.RedisURL), "redis", "rediss", "redis+cluster"); err != nil {
		return err
	}
	if c.BaseDomain == "" || strings.HasPrefix(c.BaseDomain, ".") || strings.ContainsAny(c.BaseDomain, "/: ") {
		return keyErr("base_domain", "must be a domain name such as tenants.example.com")
	}
	for i, name := range c.Components {
		if !slices.Contains(Components, name) {
			return keyErr(fmt.Sprintf("components[%d]", i), "unknown component %q (known: %s)", name, strings.Join(Components, ", "))
		}
	}
	if c.ShutdownTimeout <= 0 {
		return keyErr("shutdown_timeout", "must be positive")
	}
	if _, err := c.Log.SlogLevel(); err != nil {
		return err
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return keyErr("log.format", "must be text or json (got %q)", c.Log.Format)
	}
	if len(c.Plans) == 0 {
		return keyErr("plans", "at least one plan is required")
	}
	for _, name := range sortedKeys(c.Plans) {
		if err := c.Plans[name].validate("plans." + name); err != nil {
			return err
		}
	}
	if err := c.Authz.validate("authz"); err != nil {
		return err
	}
	if err := c.RateLimit.validate("ratelimit", c); err != nil {
		return err
	}
	if err := c.XDS.validate("xds", c); err != nil {
		return err
	}
	if err := c.Telemetry.validate("telemetry"); err != nil {
		return err
	}
	return c.Provisioner.validate("provisioner", c)
}

func checkURL(key, raw string, schemes ...string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		return keyErr(key, "must be a URL with scheme %s", strings.Join(schemes, " or "))
	}
	return nil
}

// Runs reports whether the named component is enabled.
func (c *Config) Runs(component string) bool {
	return len(c.Components) == 0 || slices.Contains(c.Components, component)
}

// KnownPlan reports whether a plan of that name is configured.
func (c *Config) KnownPlan(name string) bool {
	_, ok := c.Plans[name]
	return ok
}

// SlogLevel parses log.level.
func (l Log) SlogLevel() (slog.Level, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, keyErr("log.level", "must be debug, info, warn or error (got %q)", l.Level)
	}
	return lvl, nil
}

// Redacted renders the configuration as YAML with every secret redacted.
func (c Config) Redacted() ([]byte, error) {
	return yaml.Marshal(c)
}

// Secret is a string that never prints: URLs keep their shape with the password removed, anything
// else prints as REDACTED.
type Secret string

// String implements fmt.Stringer.
func (s Secret) String() string { return s.Redacted() }

// Redacted returns the printable form.
func (s Secret) Redacted() string {
	if s == "" {
		return ""
	}
	if u, err := url.Parse(string(s)); err == nil && u.Scheme != "" && u.Host != "" {
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "password") || strings.Contains(strings.ToLower(k), "secret") {
				q.Set(k, "REDACTED")
			}
		}
		u.RawQuery = q.Encode()
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
		return u.String()
	}
	return "REDACTED"
}

// Value returns the secret itself.
func (s Secret) Value() string { return string(s) }

// MarshalYAML implements yaml.Marshaler so secrets never reach printed config.
func (s Secret) MarshalYAML() (any, error) { return s.Redacted(), nil }

// LogValue implements slog.LogValuer so secrets never reach a log line.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.Redacted()) }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
