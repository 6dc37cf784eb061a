package steps

import (
	"strings"
)

// identName is prefix + the slug with hyphens as underscores, a valid Postgres identifier; a name
// that would pass 63 bytes uses the tenant id instead. Both are fixed for the tenant, so an undo
// finds what a do made.
func identName(prefix, slug, id string) string {
	if n := prefix + strings.ReplaceAll(slug, "-", "_"); len(n) <= 63 {
		return n
	}
	return prefix + strings.ReplaceAll(id, "-", "")
}

// namespaceName is the tenant's Kubernetes namespace: prefix + slug, or prefix + id when too long.
func namespaceName(prefix, slug, id string) string {
	if n := prefix + slug; len(n) <= 63 {
		return n
	}
	return prefix + strings.ReplaceAll(id, "-", "")[:min(32, 63-len(prefix))]
}
