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
	// The messages of one response are allocated together: a miss builds one response per token.
	options := make([]corev3.HeaderValueOption, len(stampedHeaders))
	pairs := make([]corev3.HeaderValue, len(stampedHeaders))
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
		pairs[i] = corev3.HeaderValue{Key: name, Value: values[i]}
		setOverwrite(&options[i], &pairs[i])
		headers = append(headers, &options[i])
	}
	var (
		strs  [len(metadataFacts)]structpb.Value_StringValue
		facts [len(metadataFacts)]structpb.Value
	)
	fields := make(map[string]*structpb.Value, len(metadataFacts))
	for i, name := range metadataFacts {
		strs[i].StringValue = values[i]
		facts[i].Kind = &strs[i]
		fields[name] = &facts[i]
	}
	msg := &struct {
		resp      authv3.CheckResponse
		status    status.Status
		ok        authv3.CheckResponse_OkResponse
		okHTTP    authv3.OkHttpResponse
		metadata  structpb.Struct
		namespace structpb.Value
		nsKind    structpb.Value_StructValue
		facts     structpb.Struct
	}{}
	msg.status.Code = int32(codes.OK)
	msg.okHTTP.Headers = headers
	msg.okHTTP.HeadersToRemove = remove
	msg.ok.OkResponse = &msg.okHTTP
	msg.facts.Fields = fields
	msg.nsKind.StructValue = &msg.facts
	msg.namespace.Kind = &msg.nsKind
	msg.metadata.Fields = map[string]*structpb.Value{MetadataNamespace: &msg.namespace}
	msg.resp.Status = &msg.status
	msg.resp.HttpResponse = &msg.ok
	msg.resp.DynamicMetadata = &msg.metadata
	return &msg.resp
}

// metadataFacts name the dynamic metadata fields, in the order of the stamped headers' values.
var metadataFacts = [...]string{"tenant_id", "tenant_slug", "tenant_plan", "tenant_model", "auth_subject"}

// appendFalse is the shared, never modified append=false of every stamped header.
var appendFalse = wrapperspb.Bool(false)

func overwrite(name, value string) *corev3.HeaderValueOption {
	o := new(corev3.HeaderValueOption)
	setOverwrite(o, &corev3.HeaderValue{Key: name, Value: value})
	return o
}

// setOverwrite makes o stamp h in the form that overwrites on every Envoy version.
func setOverwrite(o *corev3.HeaderValueOption, h *corev3.HeaderValue) {
	o.Header = h
	// Deprecated in the protos, yet the only field some Envoy versions read; sent together
	// with append_action so every version overwrites (DESIGN.md, known traps).
	//lint:ignore SA1019 required for Envoy versions that ignore append_action
	o.Append = appendFalse
	o.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
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
