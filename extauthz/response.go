package extauthz

import (
	"encoding/json"
	"net/http"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tenantgate/tenantgate/internal/tenant"
)

// MetadataNamespace is the key under which the allow response's dynamic metadata holds the
// tenant facts (Envoy files it under the ext_authz filter's namespace).
const MetadataNamespace = "tenantgate"

// allow builds the OK response: the stamped headers in the form every Envoy version overwrites
// with (append false and OVERWRITE_IF_EXISTS_OR_ADD), the client's other x-tenant-* headers
// removed, and the same facts as dynamic metadata.
func allow(t *tenant.Tenant, c *Claims, spoofed []string, removeCredential []string) *authv3.CheckResponse {
	values := [...]string{t.ID, t.Slug, t.Plan, string(t.Model), c.Subject}
	headers := make([]*corev3.HeaderValueOption, 0, len(stampedHeaders))
	remove := make([]string, 0, len(spoofed)+len(removeCredential)+1)
	remove = append(remove, spoofed...)
	remove = append(remove, removeCredential...)
	for i, name := range stampedHeaders {
		if values[i] == "" {
			// Envoy skips an empty value; removing the header keeps a client's copy out.
			remove = append(remove, name)
			continue
		}
		headers = append(headers, overwrite(name, values[i]))
	}
	facts := &structpb.Struct{Fields: map[string]*structpb.Value{
		"tenant_id":    structpb.NewStringValue(t.ID),
		"tenant_slug":  structpb.NewStringValue(t.Slug),
		"tenant_plan":  structpb.NewStringValue(t.Plan),
		"tenant_model": structpb.NewStringValue(string(t.Model)),
		"auth_subject": structpb.NewStringValue(c.Subject),
	}}
	return &authv3.CheckResponse{
		Status: &status.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         headers,
			HeadersToRemove: remove,
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			MetadataNamespace: structpb.NewStructValue(facts),
		}},
	}
}

func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header: &corev3.HeaderValue{Key: name, Value: value},
		// Deprecated in the protos, yet the only field some Envoy versions read; sent together
		// with append_action so every version overwrites (DESIGN.md, known traps).
		//lint:ignore SA1019 required for Envoy versions that ignore append_action
		Append:       wrapperspb.Bool(false),
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// denials holds the one response for each denying reason, built once. They are never modified.
var denials = func() [reasonCount]*authv3.CheckResponse {
	var out [reasonCount]*authv3.CheckResponse
	for r := ReasonOK + 1; r < reasonCount; r++ {
		out[r] = buildDenial(r)
	}
	return out
}()

// deny returns the denial for r: 401 with a Bearer challenge (RFC 6750) for credential problems,
// 403 for tenant problems, a 503 error_response when keys or tenants are unavailable; always a
// small application/problem+json body that never echoes the token.
func deny(r Reason) *authv3.CheckResponse { return denials[r] }

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
}

func buildDenial(r Reason) *authv3.CheckResponse {
	code := r.HTTPStatus()
	body, _ := json.Marshal(problem{Type: "about:blank", Title: http.StatusText(code), Status: code, Code: r.code()})
	headers := []*corev3.HeaderValueOption{
		overwrite("content-type", "application/problem+json"),
		overwrite("cache-control", "no-store"),
	}
	grpcCode := codes.PermissionDenied
	switch code {
	case http.StatusUnauthorized:
		grpcCode = codes.Unauthenticated
		challenge := `Bearer realm="tenantgate", error="invalid_token"`
		if r == ReasonMissingCredential {
			challenge = `Bearer realm="tenantgate"` // RFC 6750 3.1: no error code when no credential was sent
		}
		headers = append(headers, overwrite("www-authenticate", challenge))
	case http.StatusServiceUnavailable:
		grpcCode = codes.Unavailable
		headers = append(headers, overwrite("retry-after", "5"))
	}
	denied := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
		Headers: headers,
		Body:    string(body),
	}
	resp := &authv3.CheckResponse{Status: &status.Status{Code: int32(grpcCode)}}
	if code == http.StatusServiceUnavailable {
		resp.HttpResponse = &authv3.CheckResponse_ErrorResponse{ErrorResponse: denied}
	} else {
		resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied}
	}
	return resp
}
