package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tenantgate/tenantgate/extauthz"
)

// registryProbeEvery is how often authz asks whether the registry is reachable.
const registryProbeEvery = 2 * time.Second

// setupAuthz registers the ext_authz Check service on the gRPC server, runs the issuers' key
// refresh loops and a registry probe in the background, and holds readiness until every issuer
// has keys.
func setupAuthz(_ context.Context, a *app) error {
	log := a.log.With(slog.String("component", "authz"))
	var registryUp atomic.Bool
	registryUp.Store(true)
	s, err := extauthz.NewServer(a.cfg.Authz, a.cfg.BaseDomain, a.tenants,
		extauthz.WithLogger(log), extauthz.WithRegisterer(a.metrics), extauthz.WithRegistryHealth(registryUp.Load))
	if err != nil {
		return err
	}
	authv3.RegisterAuthorizationServer(a.grpc, s)
	if err := a.metrics.Register(s.Verifier().KeyAgeCollector()); err != nil {
		return err
	}
	a.runners = append(a.runners, s.Run, func(ctx context.Context) error {
		return probeRegistry(ctx, a, &registryUp)
	})
	a.addReadyCheck("authz keys", func(context.Context) error { return s.Ready() }, authv3.Authorization_ServiceDesc.ServiceName)
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

// probeRegistry records in up whether the registry answers, until ctx ends.
func probeRegistry(ctx context.Context, a *app, up *atomic.Bool) error {
	tick := time.NewTicker(registryProbeEvery)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, registryProbeEvery/2)
		err := a.registry.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if was := up.Swap(err == nil); was != (err == nil) {
			a.log.Warn("tenant registry reachability changed", slog.String("component", "authz"), slog.Bool("reachable", err == nil))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
