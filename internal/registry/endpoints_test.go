package registry

import (
	"reflect"
	"testing"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

func TestDecodeEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []tenant.Endpoint
		fastPath bool
		wantErr  bool
	}{
		{"one, as Postgres prints it", `[{"host": "10.0.0.1", "port": 8443}]`,
			[]tenant.Endpoint{{Host: "10.0.0.1", Port: 8443}}, true, false},
		{"two, as Postgres prints them", `[{"host": "a.svc", "port": 80}, {"host": "b.svc", "port": 65535}]`,
			[]tenant.Endpoint{{Host: "a.svc", Port: 80}, {Host: "b.svc", Port: 65535}}, true, false},
		{"compact JSON", `[{"host":"a","port":1}]`, []tenant.Endpoint{{Host: "a", Port: 1}}, false, false},
		{"keys in another order", `[{"port": 2, "host": "b"}]`, []tenant.Endpoint{{Host: "b", Port: 2}}, false, false},
		{"an escape in the host", `[{"host": "a\"b", "port": 3}]`, []tenant.Endpoint{{Host: `a"b`, Port: 3}}, false, false},
		{"a field the fast path does not know", `[{"host": "c", "port": 4, "weight": 1}]`,
			[]tenant.Endpoint{{Host: "c", Port: 4}}, false, false},
		{"a port beyond uint32", `[{"host": "d", "port": 99999999999}]`, nil, false, true},
		{"empty list", `[]`, nil, false, false},
		{"not JSON", `[{"host": "e", "port": }]`, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, fast := parseEndpoints([]byte(tt.in))
			if fast != tt.fastPath {
				t.Errorf("fast path taken: %v, want %v", fast, tt.fastPath)
			}
			got, err := decodeEndpoints([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("decodeEndpoints(%s) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("decodeEndpoints(%s) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}
