package registry

import (
	"bytes"
	"encoding/json"
	"math"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// decodeEndpoints decodes a tenant's upstream endpoints from the JSON Postgres prints for them. Postgres
// prints jsonb in one canonical shape, which parseEndpoints reads without reflection (encoding/json
// was a third of the time of loading 100,000 tenants); anything else goes to encoding/json.
func decodeEndpoints(b []byte) ([]tenant.Endpoint, error) {
	if eps, ok := parseEndpoints(b); ok {
		return eps, nil
	}
	var eps []tenant.Endpoint
	if err := json.Unmarshal(b, &eps); err != nil || len(eps) == 0 {
		return nil, err // an empty list reads as none, as it is stored
	}
	return eps, nil
}

// parseEndpoints reads exactly `[{"host": "H", "port": P}, ...]`, the shape of a jsonb array of
// tenant.Endpoint as Postgres prints it (keys in jsonb order, one space after ':' and ','), with no
// escapes in H. ok is false for anything else.
func parseEndpoints(b []byte) (eps []tenant.Endpoint, ok bool) {
	const (
		hostKey = `{"host": "`
		portKey = `", "port": `
	)
	if len(b) < 2 || b[0] != '[' || b[len(b)-1] != ']' {
		return nil, false
	}
	b = b[1 : len(b)-1]
	for {
		if !bytes.HasPrefix(b, []byte(hostKey)) {
			return nil, false
		}
		b = b[len(hostKey):]
		end := bytes.IndexByte(b, '"')
		if end < 0 || bytes.IndexByte(b[:end], '\\') >= 0 {
			return nil, false
		}
		host := string(b[:end])
		b = b[end:]
		if !bytes.HasPrefix(b, []byte(portKey)) {
			return nil, false
		}
		b = b[len(portKey):]
		var port uint64
		digits := 0
		for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' && digits < 10 {
			port = port*10 + uint64(b[digits]-'0')
			digits++
		}
		if digits == 0 || port > math.MaxUint32 || digits >= len(b) || b[digits] != '}' {
			return nil, false
		}
		eps = append(eps, tenant.Endpoint{Host: host, Port: uint32(port)})
		b = b[digits+1:]
		if len(b) == 0 {
			return eps, true
		}
		if !bytes.HasPrefix(b, []byte(", ")) {
			return nil, false
		}
		b = b[2:]
	}
}
