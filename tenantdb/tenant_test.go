package tenantdb_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/tenantgate/tenantgate/tenantdb"
)

func TestParseTenantID_AcceptsUUIDsInCanonicalFormOnly(t *testing.T) {
	t.Parallel()
	const id = "3f2c1d9e-8b7a-4c6d-9e5f-1a2b3c4d5e6f"
	tests := []struct {
		in, want string // want "" means refused
	}{
		{id, id},
		{strings.ToUpper(id), id},
		{"", ""},
		{"acme", ""},
		{"00000000-0000-0000-0000-000000000000", ""},
		{"{" + id + "}", ""},
		{"urn:uuid:" + id, ""},
		{strings.ReplaceAll(id, "-", ""), ""},
		{id + "'; DROP TABLE notes; --", ""},
	}
	for _, tt := range tests {
		got, err := tenantdb.ParseTenantID(tt.in)
		if tt.want == "" {
			if !errors.Is(err, tenantdb.ErrInvalidTenantID) {
				t.Errorf("ParseTenantID(%q) = %q, %v; want ErrInvalidTenantID", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseTenantID(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
