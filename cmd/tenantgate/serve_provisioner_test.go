package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tenantgate/tenantgate/internal/testenv"
)

// serve with the provisioner: the API answers on listen.http behind ext_authz-verified admin tokens,
// and a tenant created through it is provisioned by the saga workers of the same process.
func TestServe_ProvisionerAPI(t *testing.T) {
	url := testenv.Database(t)
	secret := "an-hmac-secret-of-at-least-thirty-two-bytes!"
	cfgPath := filepath.Join(t.TempDir(), "tenantgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(`
components: [provisioner]
authz:
  issuers:
    - issuer: https://admin.test
      audiences: [tenantgate-admin]
      algorithms: [HS256]
      hmac_secret: `+secret+`
provisioner:
  poll_interval: 50ms
  admin: {issuer: https://admin.test}
  kubernetes: {enabled: "false"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, url, "--config", cfgPath)
	logs, httpAddr := &p.logs, p.httpAddr

	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://admin.test", "aud": "tenantgate-admin",
		"sub": "ops", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(), "scope": "tenantgate:admin"}).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path, body, token string) (int, map[string]any) {
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return res.StatusCode, m
	}
	if code, _ := call("GET", "/v1/tenants", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	code, created := call("POST", "/v1/tenants", `{"name":"Served","plan":"free","model":"pool","admin_email":"o@served.example"}`, tok)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %v\n%s", code, created, logs.String())
	}
	waitFor(t, 30*time.Second, func() bool {
		_, got := call("GET", "/v1/tenants/"+created["id"].(string), "", tok)
		return got["status"] == "active"
	})
}
