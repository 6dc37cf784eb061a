package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"github.com/tenantgate/tenantgate/extauthz"
)

// AdminVerifier checks an admin bearer token and returns its subject. It returns an error wrapping
// ErrForbidden for a valid token that does not carry the admin scope.
type AdminVerifier interface {
	VerifyAdmin(ctx context.Context, token string) (subject string, err error)
}

// ErrForbidden: the token is valid but grants no admin rights.
var ErrForbidden = errors.New("token lacks the admin scope")

// TokenVerifier verifies a JWT: extauthz.Verifier, the same code that checks tokens for Envoy.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (extauthz.Claims, error)
}

// ScopeVerifier is the AdminVerifier over ext_authz's verifier: a token from Issuer (any configured
// issuer when empty) whose scope holds Scope.
type ScopeVerifier struct {
	Tokens TokenVerifier
	Issuer string
	Scope  string
}

// VerifyAdmin implements AdminVerifier.
func (v ScopeVerifier) VerifyAdmin(ctx context.Context, token string) (string, error) {
	c, err := v.Tokens.Verify(ctx, token)
	if err != nil {
		return "", err
	}
	if v.Issuer != "" && c.Issuer != v.Issuer {
		return "", ErrForbidden
	}
	if v.Scope == "" || !slices.Contains(c.Scope, v.Scope) {
		return "", ErrForbidden
	}
	return c.Subject, nil
}

type subjectKey struct{}

// requireAdmin lets a request through only with a valid admin bearer token.
func (h *Handler) requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			h.m.denied.WithLabelValues("missing").Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="tenantgate"`)
			writeProblem(w, r, Problem{Type: typeUnauthorized, Status: http.StatusUnauthorized,
				Detail: "an admin bearer token is required (Authorization: Bearer <token>)"})
			return
		}
		subject, err := h.verifier.VerifyAdmin(r.Context(), token)
		if errors.Is(err, ErrForbidden) {
			h.m.denied.WithLabelValues("scope").Inc()
			writeProblem(w, r, Problem{Type: typeForbidden, Status: http.StatusForbidden, Detail: "the token does not grant admin rights"})
			return
		}
		if err != nil {
			h.m.denied.WithLabelValues("invalid").Inc()
			h.log.Info("admin token refused", slog.String("reason", err.Error()))
			w.Header().Set("WWW-Authenticate", `Bearer realm="tenantgate", error="invalid_token"`)
			writeProblem(w, r, Problem{Type: typeUnauthorized, Status: http.StatusUnauthorized, Detail: "the bearer token is not valid"})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), subjectKey{}, subject)))
	})
}

func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func subjectOf(ctx context.Context) string {
	s, _ := ctx.Value(subjectKey{}).(string)
	return s
}
