package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/dynamic"

	"github.com/tenantgate/tenantgate/extauthz"
	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/provisioner"
	"github.com/tenantgate/tenantgate/provisioner/api"
	"github.com/tenantgate/tenantgate/provisioner/dns"
	"github.com/tenantgate/tenantgate/provisioner/kube"
	"github.com/tenantgate/tenantgate/provisioner/saga"
	"github.com/tenantgate/tenantgate/provisioner/steps"
	"github.com/tenantgate/tenantgate/ratelimit"
)

// setupProvisioner serves the tenant API on listen.http and runs the saga workers. Its state lives in
// database_url (schema tenantgate_provisioner); without a database it does not start.
func setupProvisioner(ctx context.Context, a *app) error {
	log := a.log.With(slog.String("component", "provisioner"))
	pc := a.cfg.Provisioner
	if a.cfg.DatabaseURL == "" {
		return &skipError{reason: "the provisioner keeps its sagas in Postgres: set database_url to run it"}
	}
	stateCfg, err := pgx.ParseConfig(a.cfg.DatabaseURL.Value())
	if err != nil {
		return fmt.Errorf("database_url: %w", err)
	}
	if err := saga.Migrate(ctx, stateCfg); err != nil {
		return fmt.Errorf("provisioner schema: %w", err)
	}
	state, err := openPool(ctx, a, a.cfg.DatabaseURL.Value())
	if err != nil {
		return fmt.Errorf("database_url: %w", err)
	}
	shared := state
	if pc.Database.SharedURL != "" {
		if shared, err = openPool(ctx, a, pc.Database.SharedURL.Value()); err != nil {
			return fmt.Errorf("provisioner.database.shared_url: %w", err)
		}
	}

	deps := steps.Deps{
		Registry: a.registry, State: state, Shared: shared, Databases: pc.Database, BaseDomain: a.cfg.BaseDomain,
		KubePlans: pc.Kubernetes.Plans, KubePrefix: pc.Kubernetes.NamespacePrefix, DNSConfig: pc.DNS, Log: log,
	}
	if deps.Kube, err = kubeClient(pc.Kubernetes, a.cfg, log); err != nil {
		return err
	}
	switch pc.DNS.Provider {
	case config.DNSRecord:
		deps.DNS = dns.NewPostgres(state, saga.Schema)
	case config.DNSExternalDNS:
		if deps.Kube == nil {
			return errors.New("provisioner.dns.provider: external-dns needs a Kubernetes cluster (provisioner.kubernetes)")
		}
		deps.DNS = dns.NewExternalDNS(deps.Kube, pc.DNS.Namespace)
	}
	if pc.Email.SMTPAddr != "" {
		deps.Mailer = steps.NewMailer(pc.Email, nil)
	} else {
		log.Warn("no provisioner.email.smtp_addr: tenants get no welcome email and no invitation")
	}
	if deps.Purger, err = counterPurger(a); err != nil {
		return err
	}
	cat, err := steps.NewCatalog(deps)
	if err != nil {
		return err
	}
	if err := a.metrics.Register(saga.InFlightCollector(state)); err != nil {
		return err
	}
	p, err := provisioner.New(provisioner.Options{
		Registry: a.registry, State: state, Catalog: cat, KnownPlan: a.cfg.KnownPlan, Logger: log,
		Saga: saga.Options{
			Workers: pc.Workers, PollInterval: pc.PollInterval.D(), Lease: pc.Lease.D(), MaxAttempts: pc.MaxAttempts,
			Backoff: pc.Backoff.D(), MaxBackoff: pc.MaxBackoff.D(), Logger: log, Metrics: a.metrics,
			Tracer: a.tracer,
		},
	})
	if err != nil {
		return err
	}

	// Admin tokens are checked by ext_authz's verifier, over the same issuers.
	tokens, err := extauthz.NewVerifier(a.cfg.Authz, extauthz.WithLogger(log),
		extauthz.WithRegisterer(prometheus.WrapRegistererWithPrefix("provisioner_admin_", a.metrics)))
	if err != nil {
		return err
	}
	if len(a.cfg.Authz.Issuers) == 0 {
		log.Warn("no token issuers configured (authz.issuers): every provisioner API call is refused")
	}
	h, err := api.NewHandler(p, api.ScopeVerifier{Tokens: tokens, Issuer: pc.Admin.Issuer, Scope: pc.Admin.Scope}, log, a.metrics)
	if err != nil {
		return err
	}
	if a.http == nil {
		a.http = http.NewServeMux()
	}
	a.http.Handle("/v1/", h)
	a.runners = append(a.runners, tokens.Run, p.Run)
	a.addDegradingCheck("provisioner database", p.Ping, "the provisioner API answers 503 and sagas wait")
	log.Info("provisioner ready", slog.String("http", a.cfg.Listen.HTTP), slog.Bool("kubernetes", deps.Kube != nil),
		slog.String("dns", pc.DNS.Provider), slog.Bool("email", deps.Mailer != nil))
	return nil
}

func openPool(ctx context.Context, a *app, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "tenantgate-provisioner"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, pool.Close)
	return pool, nil
}

// kubeClient is the Kubernetes client of the kubernetes step, or nil when the step is off.
func kubeClient(k config.Kubernetes, cfg config.Config, log *slog.Logger) (kube.Client, error) {
	if k.Enabled == config.KubernetesOff {
		return nil, nil
	}
	rest, found, err := kube.LoadConfig(k.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("provisioner.kubernetes: %w", err)
	}
	if !found {
		if k.Enabled == config.KubernetesOn {
			return nil, errors.New("provisioner.kubernetes.enabled is true but no kubeconfig or in-cluster config was found")
		}
		log.Info("no Kubernetes cluster found: the kubernetes step is off")
		return nil, nil
	}
	for name := range cfg.Plans {
		if _, ok := k.Plans[name]; !ok {
			return nil, fmt.Errorf("provisioner.kubernetes.plans.%s: plan %q needs a compute budget", name, name)
		}
	}
	dyn, err := dynamic.NewForConfig(rest)
	if err != nil {
		return nil, fmt.Errorf("provisioner.kubernetes: %w", err)
	}
	return kube.NewDynamic(dyn, k.FieldManager), nil
}

// counterPurger is what deletes a deleted tenant's rate-limit counters: the Redis store, when there is
// one. In-memory counters live in each sidecar, which purges them itself when it sees the deletion.
func counterPurger(a *app) (steps.CounterPurger, error) {
	if a.cfg.RedisURL == "" {
		return nil, nil
	}
	rc := a.cfg.RateLimit
	client, err := ratelimit.OpenRedis(ratelimit.RedisOptions{
		URL: a.cfg.RedisURL.Value(), Cluster: rc.Redis.Cluster, Timeout: rc.Timeout.D(),
		PoolSize: 4, MinIdleConns: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("redis_url: %w", err)
	}
	a.closers = append(a.closers, func() { _ = client.Close() })
	return ratelimit.NewRedisStore(client, rc.Redis.KeyPrefix)
}
