package main

import (
	"maps"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

func TestExplainRequest_IsBuiltAsEnvoyBuildsIt(t *testing.T) {
	tests := []struct {
		name    string
		f       explainFlags
		env     string
		want    explainRequest
		wantErr string
	}{
		{
			name: "token flag becomes a bearer header; names are lower-cased; repeated headers joined",
			f: explainFlags{url: "https://Acme.tenants.localhost/orders?id=7", method: "post", token: "T",
				headers: []string{"X-Trace: a", "x-trace: b"}},
			want: explainRequest{method: "POST", scheme: "https", host: "acme.tenants.localhost", path: "/orders?id=7",
				headers: map[string]string{"authorization": "Bearer T", "x-trace": "a,b"}},
		},
		{
			name: "a Host header overrides the URL's host, as curl's does",
			f:    explainFlags{url: "http://127.0.0.1:10000/", method: "GET", headers: []string{"Host: acme.tenants.localhost"}},
			want: explainRequest{method: "GET", scheme: "http", host: "acme.tenants.localhost", path: "/", headers: map[string]string{}},
		},
		{
			name: "TENANTGATE_TOKEN when no --token",
			f:    explainFlags{url: "https://a.b/", method: "GET"},
			env:  "E",
			want: explainRequest{method: "GET", scheme: "https", host: "a.b", path: "/", headers: map[string]string{"authorization": "Bearer E"}},
		},
		{name: "relative URL", f: explainFlags{url: "/orders"}, wantErr: "absolute"},
		{name: "header without a colon", f: explainFlags{url: "https://a.b/", headers: []string{"bad"}}, wantErr: "Name: value"},
		{name: "pseudo-header", f: explainFlags{url: "https://a.b/", headers: []string{":path: /x"}}, wantErr: "Name: value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TENANTGATE_TOKEN", tt.env)
			got, err := parseExplainRequest(&tt.f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.method != tt.want.method || got.scheme != tt.want.scheme || got.host != tt.want.host || got.path != tt.want.path || !maps.Equal(got.headers, tt.want.headers) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheckRequest_CarriesPseudoHeadersAndRouteContext(t *testing.T) {
	req := explainRequest{method: "GET", scheme: "https", host: "acme.tenants.localhost", path: "/orders",
		headers: map[string]string{"authorization": "Bearer T"}}
	ext := map[string]string{"tenant_id": "id-1"}
	cr := checkRequest(req, ext)
	h := cr.GetAttributes().GetRequest().GetHttp()
	for k, v := range map[string]string{":authority": "acme.tenants.localhost", ":method": "GET", ":path": "/orders", ":scheme": "https", "authorization": "Bearer T"} {
		if h.GetHeaders()[k] != v {
			t.Errorf("header %s = %q, want %q", k, h.GetHeaders()[k], v)
		}
	}
	if h.GetHost() != req.host || h.GetPath() != req.path || h.GetMethod() != "GET" {
		t.Errorf("http attributes = %v", h)
	}
	if !maps.Equal(cr.GetAttributes().GetContextExtensions(), ext) {
		t.Errorf("context extensions = %v", cr.GetAttributes().GetContextExtensions())
	}
}

func TestRateLimitRequest_CountsNothingUnlessAsked(t *testing.T) {
	for _, hits := range []uint32{0, 3} {
		r := rateLimitRequest("id-1", "orders", hits)
		d := r.GetDescriptors()[0]
		if r.GetDomain() != "tenantgate" || len(d.GetEntries()) != 2 ||
			d.GetEntries()[0].GetKey() != "tenant_id" || d.GetEntries()[0].GetValue() != "id-1" ||
			d.GetEntries()[1].GetKey() != "endpoint" || d.GetEntries()[1].GetValue() != "orders" {
			t.Fatalf("request = %v", r)
		}
		if d.GetHitsAddend() == nil || d.GetHitsAddend().GetValue() != uint64(hits) {
			t.Fatalf("hits_addend = %v, want explicitly %d", d.GetHitsAddend(), hits)
		}
	}
}

func TestRateLimitVerdict(t *testing.T) {
	limit := &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_HOUR}
	tests := []struct {
		name string
		resp *rlsv3.RateLimitResponse
		want string
	}{
		{"room left", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: limit, LimitRemaining: 1}}}, "OK"},
		{"window used up", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK, CurrentLimit: limit, LimitRemaining: 0}}}, "OVER_LIMIT"},
		{"refused (failure mode closed)", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, "OVER_LIMIT"},
		{"no limit reported (failure mode open)", &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{
			{Code: rlsv3.RateLimitResponse_OK}}}, "OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rateLimitVerdict(tt.resp); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("verdict = %q, want %s", got, tt.want)
			}
		})
	}
}

func TestParseRateLimitHeader_EveryWindow(t *testing.T) {
	tests := []struct {
		header string
		want   []rateLimitWindow
	}{
		{`"1h";r=99;t=3600`, []rateLimitWindow{{`"1h"`, "99", "3600"}}},
		{`"search 1s";r=0;t=1, "1h";r=950;t=3541`, []rateLimitWindow{{`"search 1s"`, "0", "1"}, {`"1h"`, "950", "3541"}}},
		{`"a, \"b\"";r=1;t=2, "2s";r=6;t=3`, []rateLimitWindow{{`"a, \"b\""`, "1", "2"}, {`"2s"`, "6", "3"}}},
		{`garbage, "1h";r=5`, nil},
		{``, nil},
	}
	for _, tt := range tests {
		got := parseRateLimitHeader(tt.header)
		if len(got) != len(tt.want) {
			t.Errorf("parseRateLimitHeader(%q) = %v, want %v", tt.header, got, tt.want)
			continue
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("parseRateLimitHeader(%q)[%d] = %v, want %v", tt.header, i, got[i], tt.want[i])
			}
		}
	}
}
