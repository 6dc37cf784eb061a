package extauthz

import (
	"errors"
	"slices"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// credentialRules say where a token may come from.
type credentialRules struct {
	maxBytes int
	cookie   string // "" when tokens never come in a cookie
	header   string // lower-case; "" when tokens never come in a custom header
}

// request is what Check needs from the client's headers, read in one pass.
type request struct {
	credentials []credential // every credential-bearing value found (Authorization, the header, the cookie)
	oversized   bool
	spoofed     []string // client-sent x-tenant-* names that are not stamped
}

// credential is one value that may carry a token, and where it was found.
type credential struct {
	from  byte // 'a' Authorization, 'h' the configured header, 'c' the configured cookie
	value string
}

// stampedHeaders are the headers an allowed request carries; Check always sets them itself.
var stampedHeaders = []string{"x-tenant-id", "x-tenant-slug", "x-tenant-plan", "x-tenant-model", "x-auth-subject"}

// readRequest collects credentials and spoofed tenant headers from both forms Envoy may send:
// request.http.headers (values of repeated headers joined with a comma) and header_map (one entry
// per header line). Where both are present they must agree, or the request holds more than one
// credential.
func (r credentialRules) readRequest(h *authv3.AttributeContext_HttpRequest) request {
	var joined, raw request
	for name, value := range h.GetHeaders() {
		r.collect(&joined, name, value)
	}
	for _, hv := range h.GetHeaderMap().GetHeaders() {
		v := hv.GetValue()
		if len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		r.collect(&raw, hv.GetKey(), v)
	}
	switch {
	case len(raw.credentials) == 0 && len(raw.spoofed) == 0 && !raw.oversized:
		return joined
	case len(joined.credentials) == 0 && len(joined.spoofed) == 0 && !joined.oversized:
		return raw
	}
	// Both forms present: one credential in total, seen the same way in each, or the union.
	out := raw
	out.oversized = raw.oversized || joined.oversized
	if !sameCredentials(raw.credentials, joined.credentials) {
		out.credentials = append(out.credentials, joined.credentials...)
	}
	for _, s := range joined.spoofed {
		if !slices.Contains(out.spoofed, s) {
			out.spoofed = append(out.spoofed, s)
		}
	}
	return out
}

func (r credentialRules) collect(req *request, name, value string) {
	name = lowerASCII(name)
	switch {
	case name == "authorization":
		r.collectLines(req, 'a', value)
	case r.header != "" && name == r.header:
		r.collectLines(req, 'h', value)
	case r.cookie != "" && name == "cookie":
		for pair := range strings.SplitSeq(value, ";") {
			n, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || n != r.cookie {
				continue
			}
			if len(v) > r.maxBytes+64 {
				req.oversized = true
				return
			}
			req.credentials = append(req.credentials, credential{'c', strings.Trim(v, `"`)})
		}
	case strings.HasPrefix(name, "x-tenant-") && !slices.Contains(stampedHeaders, name):
		if !slices.Contains(req.spoofed, name) {
			req.spoofed = append(req.spoofed, name)
		}
	}
}

// collectLines adds each credential of a header that may be joined: a joined header holds every
// line, comma-separated.
func (r credentialRules) collectLines(req *request, from byte, value string) {
	if len(value) > r.maxBytes+64 {
		req.oversized = true
		return
	}
	for v := range strings.SplitSeq(value, ",") {
		req.credentials = append(req.credentials, credential{from, strings.TrimSpace(v)})
	}
}

var (
	errNotBearer = errors.New("authorization scheme is not Bearer")
	errBadToken  = errors.New("credential holds characters a token cannot")
)

// token returns the one bearer token of the request. More than one credential is denied, never
// guessed; the size cap applies before any parsing.
func (r credentialRules) token(req *request) (string, *Error) {
	if req.oversized {
		return "", fail(ReasonTokenTooLarge, nil)
	}
	switch len(req.credentials) {
	case 0:
		return "", fail(ReasonMissingCredential, nil)
	case 1:
	default:
		return "", fail(ReasonMultipleCredentials, nil)
	}
	c := req.credentials[0]
	v := c.value
	if c.from == 'a' {
		scheme, rest, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "bearer") {
			return "", fail(ReasonMalformedToken, errNotBearer)
		}
		v = strings.TrimLeft(rest, " ")
	}
	if len(v) > r.maxBytes {
		return "", fail(ReasonTokenTooLarge, nil)
	}
	if v == "" {
		return "", fail(ReasonMissingCredential, nil)
	}
	for i := 0; i < len(v); i++ {
		if !isTokenChar(v[i]) {
			return "", fail(ReasonMalformedToken, errBadToken)
		}
	}
	return v, nil
}

// isTokenChar: a compact JWS is base64url parts joined by dots.
func isTokenChar(c byte) bool { return tokenChars[c] }

// tokenChars is isTokenChar as a table: every request's token goes through it, a byte at a time.
var tokenChars = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	return t
}()

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

func sameCredentials(a, b []credential) bool {
	if len(a) != len(b) {
		return false
	}
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}
