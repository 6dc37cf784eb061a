package tenant

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// FieldError names the field of a tenant that is invalid and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// ErrInvalid is wrapped by every validation error, for errors.Is.
var ErrInvalid = errors.New("invalid tenant")

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %w", ErrInvalid, &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// NewID returns a new random tenant id (UUID v4).
func NewID() string { return uuid.NewString() }

// CheckID validates a tenant id: a UUID v4 in its canonical lower-case form.
func CheckID(id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id || u.Version() != 4 {
		return invalid("id", "must be a lower-case UUID v4")
	}
	return nil
}

// reservedSlugs are labels a tenant may never take: they name our own hosts or invite phishing.
var reservedSlugs = map[string]bool{
	"www": true, "api": true, "admin": true, "mail": true, "smtp": true, "imap": true, "pop": true,
	"ftp": true, "ns1": true, "ns2": true, "dns": true, "mx": true, "app": true, "apps": true,
	"auth": true, "login": true, "sso": true, "oauth": true, "static": true, "assets": true, "cdn": true,
	"status": true, "support": true, "help": true, "docs": true, "blog": true, "billing": true,
	"dashboard": true, "console": true, "internal": true, "system": true, "root": true,
	"localhost": true, "tenantgate": true, "envoy": true, "xds": true, "metrics": true, "grafana": true,
	"prometheus": true, "kube-system": true, "default": true, "test": true, "staging": true, "dev": true,
}

// CheckSlug validates a slug: a DNS label of 3 to 63 characters, lower-case letters, digits and
// hyphens, no leading or trailing hyphen, and not reserved.
func CheckSlug(slug string) error {
	if len(slug) < 3 || len(slug) > 63 {
		return invalid("slug", "must be 3 to 63 characters")
	}
	for i := 0; i < len(slug); i++ {
		c := slug[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return invalid("slug", "may hold only lower-case letters, digits and hyphens")
		}
	}
	if slug[0] == '-' || slug[len(slug)-1] == '-' {
		return invalid("slug", "must not start or end with a hyphen")
	}
	if reservedSlugs[slug] {
		return invalid("slug", "%q is reserved", slug)
	}
	return nil
}

// SlugFromName derives a slug from a display name: lower case, runs of other characters turned into
// one hyphen, trimmed to 63 characters. The result still has to pass CheckSlug.
func SlugFromName(name string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			hyphen = false
		case !hyphen && b.Len() > 0:
			b.WriteByte('-')
			hyphen = true
		}
		if b.Len() >= 63 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}

// Validate checks the fields of t that do not depend on configuration. Plans are checked against the
// configured plan names by the caller that knows them (see CheckPlan).
func (t *Tenant) Validate() error {
	if err := CheckID(t.ID); err != nil {
		return err
	}
	if err := CheckSlug(t.Slug); err != nil {
		return err
	}
	if strings.TrimSpace(t.Name) == "" {
		return invalid("name", "is required")
	}
	if len(t.Name) > 200 {
		return invalid("name", "must be at most 200 characters")
	}
	if t.Plan == "" {
		return invalid("plan", "is required")
	}
	if !t.Model.Valid() {
		return invalid("model", "must be one of silo, bridge, pool, namespace")
	}
	if !t.Status.Valid() {
		return invalid("status", "unknown status %q", t.Status)
	}
	for i, ep := range t.Upstream.Endpoints {
		if ep.Host == "" || ep.Port == 0 || ep.Port > 65535 {
			return invalid(fmt.Sprintf("upstream.endpoints[%d]", i), "needs a host and a port from 1 to 65535")
		}
	}
	return nil
}

// CheckPlan returns an error naming the plan when it is not among the configured plans.
func CheckPlan(plan string, known func(string) bool) error {
	if !known(plan) {
		return invalid("plan", "unknown plan %q", plan)
	}
	return nil
}
