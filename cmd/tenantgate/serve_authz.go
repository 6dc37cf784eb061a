package main

import (
	"context"
	"log/slog"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tenantgate/tenantgate/extauthz"
)

// setupAuthz registers the ext_authz Check service on the gRPC server, runs the issuers' key
// refresh loops in the background, and holds readiness until every issuer has keys.
func setupAuthz(_ context.Context, a *app) error {
	log := a.log.With(slog.String("component", "authz"))
	s, err := extauthz.NewServer(a.cfg.Authz, a.cfg.BaseDomain, a.tenants,
		extauthz.WithLogger(log), extauthz.WithRegisterer(a.metrics))
	if err != nil {
		return err
	}
	authv3.RegisterAuthorizationServer(a.grpc, s)
	a.runners = append(a.runners, s.Run)
	a.addReadyCheck("authz keys", func(context.Context) error { return s.Ready() })
	if len(a.cfg.Authz.Issuers) == 0 {
		log.Warn("no token issuers configured (authz.issuers): every request is denied")
	}
	for _, iss := range a.cfg.Authz.Issuers {
		if iss.Issuer == extauthz.DevIssuer {
			log.Warn("development tokens are trusted: remove this issuer outside development",
				slog.String("issuer", iss.Issuer), slog.String("jwks_file", iss.JWKSFile))
		}
	}
	return nil
}
