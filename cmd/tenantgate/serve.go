package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/grpcopts"
	"github.com/tenantgate/tenantgate/internal/registry"
	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/telemetry"
)

type serveFlags struct {
	configPath  string
	tenantsFile string
	components  string
	listen      config.Listen
	printConfig bool
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the tenantgate parts named by --components (default: all)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(cmd, &f)
			if err != nil {
				return err
			}
			if f.printConfig {
				out, err := cfg.Redacted()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			}
			log, err := newLogger(cfg.Log, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "path of the YAML config file")
	fl.StringVar(&f.tenantsFile, "tenants-file", "", "YAML file seeding the in-memory registry (when no database URL is set)")
	fl.StringVar(&f.components, "components", "", "comma-separated parts to run: authz,ratelimit,xds,provisioner (default all)")
	fl.StringVar(&f.listen.GRPC, "grpc-addr", "", "listen address of ext_authz, rate limit and gRPC health (default :9001)")
	fl.StringVar(&f.listen.XDS, "xds-addr", "", "listen address of the xDS server (default :18000)")
	fl.StringVar(&f.listen.HTTP, "http-addr", "", "listen address of the provisioner HTTP API (default :8080)")
	fl.StringVar(&f.listen.Admin, "admin-addr", "", "listen address of /metrics, /healthz, /readyz (default :9090)")
	fl.BoolVar(&f.printConfig, "print-config", false, "print the effective config, secrets redacted, and exit")
	return cmd
}

// loadServeConfig reads the config file and environment, then applies the flags, and validates again.
func loadServeConfig(cmd *cobra.Command, f *serveFlags) (config.Config, error) {
	cfg, err := config.Load(f.configPath, os.Getenv)
	if err != nil {
		return config.Config{}, err
	}
	fl := cmd.Flags()
	set := func(flag string, dst *string, v string) {
		if fl.Changed(flag) {
			*dst = v
		}
	}
	set("grpc-addr", &cfg.Listen.GRPC, f.listen.GRPC)
	set("xds-addr", &cfg.Listen.XDS, f.listen.XDS)
	set("http-addr", &cfg.Listen.HTTP, f.listen.HTTP)
	set("admin-addr", &cfg.Listen.Admin, f.listen.Admin)
	set("tenants-file", &cfg.TenantsFile, f.tenantsFile)
	if fl.Changed("components") {
		cfg.Components = nil
		for _, c := range strings.Split(f.components, ",") {
			if c = strings.TrimSpace(c); c != "" {
				cfg.Components = append(cfg.Components, c)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return config.Config{}, err
	}
	return cfg, nil
}

func newLogger(c config.Log, w io.Writer) (*slog.Logger, error) {
	level, err := c.SlogLevel()
	if err != nil {
		return nil, err
	}
	return telemetry.NewLogger(c.Format, level, w)
}

// app is one serving process: the shared parts every component is built from, and what the
// components add to it (gRPC services, readiness checks, background loops).
type app struct {
	cfg      config.Config
	log      *slog.Logger
	metrics  *prometheus.Registry
	tracer   trace.TracerProvider // records nothing unless telemetry.tracing is on
	registry registry.Registry
	tenants  *snapshot.Store
	grpc     *grpc.Server
	health   *health.Server
	http     *http.ServeMux // the provisioner API on listen.http; nil unless a component needs it

	// closers run, in reverse, after every part has stopped.
	closers []func()
	// readiness checks behind /readyz, by name.
	ready []readyCheck
	// runners are the background parts, run under one errgroup until the context ends.
	runners []func(ctx context.Context) error
	// servers are extra listeners a component serves (such as xDS); each returns when ctx ends.
	servers []func(ctx context.Context) error
}

// readyCheck is one condition behind /readyz and the overall gRPC health status (""). It also gates
// the per-service gRPC health of the services it names ("*": every service), so a Redis outage that
// the rate limiter rides out in its failure mode does not take ext_authz out of service with it.
//
// A degrading check (degraded != "") names a dependency the process serves on without: its failure
// is shown on /readyz with what it means, but leaves the process ready. Otherwise a Redis or Postgres
// outage would take every gateway pod out of its Service at once (a pod is ready only when all its
// containers are), which is the outage the failure modes and the snapshot exist to ride out.
type readyCheck struct {
	name     string
	check    func(ctx context.Context) error
	services []string
	degraded string
}

// gatesEveryService is the services value of a check without which no gRPC service can answer.
const gatesEveryService = "*"

func (a *app) addReadyCheck(name string, check func(ctx context.Context) error, services ...string) {
	a.ready = append(a.ready, readyCheck{name: name, check: check, services: services})
}

// addDegradingCheck adds a check whose failure leaves the process serving as degraded says.
func (a *app) addDegradingCheck(name string, check func(ctx context.Context) error, degraded string) {
	a.ready = append(a.ready, readyCheck{name: name, check: check, degraded: degraded})
}

// serve builds every enabled part and runs them until ctx ends, then drains within the shutdown timeout.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	a := &app{cfg: cfg, log: log, metrics: prometheus.NewRegistry()}
	defer func() {
		for i := len(a.closers) - 1; i >= 0; i-- {
			a.closers[i]()
		}
	}()
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	reg, err := openRegistry(ctx, a)
	if err != nil {
		return err
	}
	a.registry = reg
	a.tenants = snapshot.NewStore(reg, snapshot.WithLogger(log))
	a.addDegradingCheck("registry", reg.Ping, "tenants are served from the last snapshot; registry changes wait")
	a.addReadyCheck("tenant snapshot", func(context.Context) error {
		if !a.tenants.IsReady() {
			return errors.New("not loaded yet")
		}
		return nil
	}, gatesEveryService)

	observe, err := setupTelemetry(a)
	if err != nil {
		return err
	}
	a.grpc = grpc.NewServer(append(grpcopts.DataPlane(), grpc.ChainUnaryInterceptor(observe.Unary))...)
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpc, a.health)
	a.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)

	for _, c := range components() {
		if !cfg.Runs(c.name) {
			continue
		}
		err := c.setup(ctx, a)
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			log.Warn("component not started", slog.String("component", c.name), slog.String("reason", skip.reason))
			continue
		case err != nil:
			return fmt.Errorf("set up %s: %w", c.name, err)
		}
		log.Info("component enabled", slog.String("component", c.name))
	}
	return a.run(ctx)
}

// skipError is returned by a component's setup when the configuration leaves it nothing to run (the
// rest of the process serves on).
type skipError struct{ reason string }

func (e *skipError) Error() string { return "not started: " + e.reason }

// component is one part `serve` can run; its setup adds services, checks and loops to the app.
type component struct {
	name  string
	setup func(ctx context.Context, a *app) error
}

func components() []component {
	return []component{
		{"authz", setupAuthz},
		{"ratelimit", setupRateLimit},
		{"xds", setupXDS},
		{"provisioner", setupProvisioner},
	}
}

func (a *app) run(ctx context.Context) error {
	grpcLis, err := net.Listen("tcp", a.cfg.Listen.GRPC)
	if err != nil {
		return fmt.Errorf("listen %s (listen.grpc): %w", a.cfg.Listen.GRPC, err)
	}
	adminLis, err := net.Listen("tcp", a.cfg.Listen.Admin)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen %s (listen.admin): %w", a.cfg.Listen.Admin, err)
	}
	admin := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	var api *http.Server
	var apiLis net.Listener
	if a.http != nil {
		apiLis, err = net.Listen("tcp", a.cfg.Listen.HTTP)
		if err != nil {
			grpcLis.Close()
			adminLis.Close()
			return fmt.Errorf("listen %s (listen.http): %w", a.cfg.Listen.HTTP, err)
		}
		api = &http.Server{Handler: a.http, ReadHeaderTimeout: 5 * time.Second}
	}
	a.log.Info("tenantgate serving",
		slog.String("grpc", grpcLis.Addr().String()), slog.String("admin", adminLis.Addr().String()))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.tenants.Run(gctx) })
	for _, r := range a.runners {
		g.Go(func() error { return r(gctx) })
	}
	for _, s := range a.servers {
		g.Go(func() error { return s(gctx) })
	}
	g.Go(func() error { return a.watchHealth(gctx) })
	g.Go(func() error {
		if err := a.grpc.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error { return serveHTTP(admin, adminLis) })
	if api != nil {
		g.Go(func() error { return serveHTTP(api, apiLis) })
	}
	g.Go(func() error {
		<-gctx.Done()
		a.log.Info("shutting down", slog.Duration("deadline", a.cfg.ShutdownTimeout.D()))
		a.health.Shutdown()
		stopCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout.D())
		defer cancel()
		stopGRPC(stopCtx, a.grpc)
		if api != nil {
			_ = api.Shutdown(stopCtx)
		}
		return admin.Shutdown(stopCtx)
	})
	return g.Wait()
}

func serveHTTP(s *http.Server, l net.Listener) error {
	if err := s.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server %s: %w", l.Addr(), err)
	}
	return nil
}

// stopGRPC stops accepting calls and waits for in-flight ones until ctx ends, then cuts them off.
func stopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() {
		s.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
		<-done
	}
}

// watchHealth keeps the gRPC health statuses in step with readiness: the overall status ("") with
// every check, each service's status with the checks that gate it.
func (a *app) watchHealth(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var services []string
	for name := range a.grpc.GetServiceInfo() {
		if name != healthpb.Health_ServiceDesc.ServiceName {
			services = append(services, name)
		}
	}
	for {
		failed := a.checkReady(ctx)
		a.health.SetServingStatus("", servingStatus(!a.unready(failed)))
		for _, svc := range services {
			a.health.SetServingStatus(svc, servingStatus(!a.gates(failed, svc)))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// unready reports whether a failed check makes the process unready (one that only degrades does not).
func (a *app) unready(failed map[string]error) bool {
	for _, c := range a.ready {
		if _, bad := failed[c.name]; bad && c.degraded == "" {
			return true
		}
	}
	return false
}

// gates reports whether a failed check gates the gRPC service svc.
func (a *app) gates(failed map[string]error, svc string) bool {
	for _, c := range a.ready {
		if _, bad := failed[c.name]; bad && (slices.Contains(c.services, svc) || slices.Contains(c.services, gatesEveryService)) {
			return true
		}
	}
	return false
}

func servingStatus(ok bool) healthpb.HealthCheckResponse_ServingStatus {
	if ok {
		return healthpb.HealthCheckResponse_SERVING
	}
	return healthpb.HealthCheckResponse_NOT_SERVING
}

// checkReady runs every readiness check and returns the failures by name.
func (a *app) checkReady(ctx context.Context) map[string]error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	failed := map[string]error{}
	for _, c := range a.ready {
		if err := c.check(ctx); err != nil {
			failed[c.name] = err
		}
	}
	return failed
}

func (a *app) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		failed := a.checkReady(r.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if a.unready(failed) {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		for _, c := range a.ready {
			err, bad := failed[c.name]
			switch {
			case !bad:
				fmt.Fprintf(w, "%s: ok\n", c.name)
			case c.degraded != "":
				fmt.Fprintf(w, "%s: down, serving degraded (%s): %v\n", c.name, c.degraded, err)
			default:
				fmt.Fprintf(w, "%s: not ready: %v\n", c.name, err)
			}
		}
	})
	return mux
}
