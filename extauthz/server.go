package extauthz

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/tenantgate/tenantgate/internal/config"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Server is the ext_authz v3 Authorization service.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	verifier   *Verifier
	tenants    Tenants
	baseDomain string
	rules      credentialRules
	removeCred []string // headers removed on allow when remove_authorization is set
	registryUp func() bool
	metrics    *metrics
	log        *slog.Logger
}

// NewServer builds the Check service for cfg (validated), deciding tenants from tenants and
// binding hosts under baseDomain. Run must run for remote keys to load.
func NewServer(cfg config.Authz, baseDomain string, tenants Tenants, opts ...Option) (*Server, error) {
	o := buildOptions(opts)
	m, err := newMetrics(o.registry)
	if err != nil {
		return nil, fmt.Errorf("authz metrics: %w", err)
	}
	s := &Server{
		verifier:   newVerifier(cfg, o, m),
		tenants:    tenants,
		baseDomain: strings.ToLower(strings.TrimSuffix(baseDomain, ".")),
		rules: credentialRules{
			maxBytes: cfg.MaxTokenBytes,
			cookie:   cfg.Cookie,
			header:   strings.ToLower(cfg.Header),
		},
		metrics:    m,
		log:        o.log,
		registryUp: o.registryUp,
	}
	if cfg.RemoveAuthorization {
		s.removeCred = append(s.removeCred, "authorization")
		if s.rules.header != "" {
			s.removeCred = append(s.removeCred, s.rules.header)
		}
	}
	return s, nil
}

// Verifier returns the server's token verifier, for other parts that check bearer tokens the same way.
func (s *Server) Verifier() *Verifier { return s.verifier }

// Run keeps the issuers' keys fresh until ctx ends.
func (s *Server) Run(ctx context.Context) error { return s.verifier.Run(ctx) }

// Ready reports whether every issuer has keys.
func (s *Server) Ready() error { return s.verifier.Ready() }

// Check decides one request for Envoy. A denial is a successful RPC carrying the denial.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	httpReq := req.GetAttributes().GetRequest().GetHttp()
	r := s.rules.readRequest(httpReq)
	token, ferr := s.rules.token(&r)
	if ferr != nil {
		return s.deny(ctx, ferr), nil
	}
	claims, entry, err := s.verifier.verifyCached(token)
	if err != nil {
		return s.deny(ctx, err), nil
	}
	t, reason := decide(s.tenants, s.registryUp, &claims, httpReq.GetHost(), s.baseDomain, req.GetAttributes().GetContextExtensions())
	if reason != ReasonOK {
		return s.deny(ctx, fail(reason, nil)), nil
	}
	s.metrics.checks[ReasonOK].Inc()
	return s.allow(t, &claims, entry, r.spoofed), nil
}

// allow returns the OK response, reusing the one built for the same cached token and tenant
// record when the client sent no extra x-tenant-* header. Responses are shared: never modify one.
func (s *Server) allow(t *tenant.Tenant, c *Claims, entry *cacheEntry, spoofed []string) *authv3.CheckResponse {
	if entry == nil || len(spoofed) > 0 {
		return allow(t, c, spoofed, s.removeCred)
	}
	if m := entry.allowed.Load(); m != nil && m.tenant == t {
		return m.resp
	}
	resp := allow(t, c, nil, s.removeCred)
	entry.allowed.Store(&allowMemo{tenant: t, resp: resp})
	return resp
}

func (s *Server) deny(ctx context.Context, err error) *authv3.CheckResponse {
	r := ReasonOf(err)
	s.metrics.checks[r].Inc()
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.DebugContext(ctx, "ext_authz denied", slog.String("reason", r.String()), slog.Int("status", r.HTTPStatus()), slog.Any("detail", err))
	}
	return deny(r)
}
