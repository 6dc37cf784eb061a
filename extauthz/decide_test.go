package extauthz

import "testing"

func TestHostAllows_BindsTenantHostsOnly(t *testing.T) {
	cases := []struct {
		host, slug string
		want       bool
	}{
		{"acme.tenants.example.com", "acme", true},
		{"ACME.tenants.example.COM", "acme", true},
		{"acme.tenants.example.com:8443", "acme", true},
		{"acme.tenants.example.com.", "acme", true},
		{"globex.tenants.example.com", "acme", false},
		{"evil.acme.tenants.example.com", "acme", false},
		{"acme.tenants.example.com.evil.net", "acme", true}, // not under the base domain: no binding
		{"xacme.tenants.example.com", "acme", false},
		{"tenants.example.com", "acme", true},
		{"notenants.example.com", "acme", true},
		{"api.example.com", "acme", true},
		{"[::1]:443", "acme", true},
		{"", "acme", true},
	}
	for _, tc := range cases {
		if got := hostAllows(tc.host, baseDomain, tc.slug); got != tc.want {
			t.Errorf("hostAllows(%q, %q) = %v, want %v", tc.host, tc.slug, got, tc.want)
		}
	}
}

func TestListHas_TrimsItems(t *testing.T) {
	if !listHas("free, pro ,enterprise", "pro") || listHas("free,pro", "enterprise") || listHas("", "free") {
		t.Fatal("listHas")
	}
}
