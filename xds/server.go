package xds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tenantgate/tenantgate/internal/snapshot"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// Server is the xDS control plane. Feed it tenant changes with OnChange (a snapshot.Listener), run
// its publisher with Run, and serve ADS with Serve. It serves nothing before the first complete
// configuration is built, and keeps the last one through a registry outage.
type Server struct {
	params  envoybuild.Params
	log     *slog.Logger
	metrics *metrics
	caches  *caches
	nacks   *nacks

	// pending are the tenants changed since the last publish, with the latest snapshot.
	mu      sync.Mutex
	pending map[string]struct{}
	latest  *snapshot.Snapshot
	wake    chan struct{}

	state *state        // publisher goroutine only
	ready chan struct{} // closed once the first complete configuration is published
	// onPublish is called after every publish; observers (metrics, tests) add to it with withPublishHook.
	onPublish func(revision int64)
}

// Option configures a Server.
type Option func(*Server)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithRegisterer registers the server's metrics.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(s *Server) { s.metrics = newMetrics(r) }
}

// withPublishHook adds fn to what is called after every publish with the snapshot revision; hooks
// added earlier still run, so options can come in any order.
func withPublishHook(fn func(revision int64)) Option {
	return func(s *Server) {
		prev := s.onPublish
		s.onPublish = func(revision int64) {
			if prev != nil {
				prev(revision)
			}
			fn(revision)
		}
	}
}

// New returns a server building from params (already validated with the configuration).
func New(params envoybuild.Params, opts ...Option) *Server {
	s := &Server{
		params:  params,
		log:     slog.Default(),
		pending: map[string]struct{}{},
		wake:    make(chan struct{}, 1),
		state:   newState(),
		ready:   make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.metrics == nil {
		s.metrics = newMetrics(nil)
	}
	s.caches = newCaches(bootID() + "-")
	s.nacks = newNACKs(params.XDS.NACKBackoff.D(), params.XDS.NACKBackoffMax.D(), s.log, s.metrics.nacks)
	return s
}

// bootID tells this process's versions apart from a previous one's, so a state-of-the-world Envoy
// reconnecting after a restart never mistakes a new version for one it holds.
func bootID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// OnChange is a snapshot.Listener: it records which tenants changed and wakes the publisher. It
// never blocks.
func (s *Server) OnChange(next *snapshot.Snapshot, changed []tenant.Tenant) {
	s.mu.Lock()
	s.latest = next
	for i := range changed {
		s.pending[changed[i].ID] = struct{}{}
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Ready is closed once the first complete configuration is published.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// CheckReady reports (for /readyz) whether a complete configuration is being served.
func (s *Server) CheckReady(context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
		return errors.New("no complete xDS configuration built yet")
	}
}

// Run publishes changes until ctx ends: it waits for the registry to be quiet for the debounce, but
// never longer than the maximum delay after the first change of a burst.
func (s *Server) Run(ctx context.Context) error {
	debounce, maxDelay := s.params.XDS.Debounce.D(), s.params.XDS.MaxDelay.D()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		}
		first := time.Now()
		timer.Reset(debounce)
	coalesce:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-s.wake:
				left := maxDelay - time.Since(first)
				if left <= 0 {
					break coalesce
				}
				timer.Stop()
				timer.Reset(min(debounce, left))
			case <-timer.C:
				break coalesce
			}
		}
		if err := s.publishPending(); err != nil {
			return err
		}
	}
}

func (s *Server) publishPending() error {
	s.mu.Lock()
	snap := s.latest
	ids := make([]string, 0, len(s.pending))
	for id := range s.pending {
		ids = append(ids, id)
	}
	clear(s.pending)
	s.mu.Unlock()
	if snap == nil {
		return nil
	}
	start := time.Now()
	first := !s.isReady()
	if first {
		if err := s.publishStatic(); err != nil {
			return fmt.Errorf("publish static xds resources: %w", err)
		}
		ids = activeIDs(snap)
	}
	if err := s.publish(snap, ids); err != nil {
		// A cache refused an update: the served config is no longer what the state says.
		return fmt.Errorf("publish xds resources: %w", err)
	}
	s.metrics.observePublish(time.Since(start), s.caches)
	if first {
		close(s.ready)
		s.log.Info("xds configuration complete; serving", slog.Int("tenants", len(s.state.tenants)),
			slog.Int64("revision", snap.Revision()), slog.Duration("took", time.Since(start)))
	} else {
		s.log.Debug("xds configuration pushed", slog.Int("changed", len(ids)), slog.Int64("revision", snap.Revision()),
			slog.Duration("took", time.Since(start)))
	}
	if s.onPublish != nil {
		s.onPublish(snap.Revision())
	}
	return nil
}

func (s *Server) isReady() bool {
	select {
	case <-s.ready:
		return true
	default:
		return false
	}
}

// GRPCOptions are the options of the ADS gRPC server: the receive limit raised for the large requests
// of reconnecting Envoys (which name every resource they hold), and keepalives so dead connections
// are noticed.
func (s *Server) GRPCOptions() []grpc.ServerOption {
	x := s.params.XDS
	return []grpc.ServerOption{
		// The first response to a new Envoy carries every tenant: sends stay unlimited (gRPC's default).
		grpc.MaxRecvMsgSize(x.MaxMessageBytes),
		grpc.MaxConcurrentStreams(100_000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: x.Keepalive.D(), Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	}
}

// Serve serves ADS on lis until ctx ends. It starts answering only once the first complete
// configuration is published, so a restarted control plane never hands an Envoy a partial config.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	defer lis.Close()
	select {
	case <-ctx.Done():
		return nil
	case <-s.ready:
	}
	g := grpc.NewServer(s.GRPCOptions()...)
	xds := serverv3.NewServer(ctx, &backoffCache{inner: s.caches, nacks: s.nacks}, s.callbacks(), sotw.WithOrderedADS())
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, xds)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		// ADS streams never end on their own: stop at once, Envoys reconnect elsewhere.
		g.Stop()
	}()
	s.log.Info("xds serving", slog.String("addr", lis.Addr().String()))
	err := g.Serve(lis)
	<-done
	if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds server: %w", err)
	}
	return nil
}

func (s *Server) callbacks() serverv3.CallbackFuncs {
	return serverv3.CallbackFuncs{
		StreamOpenFunc: func(context.Context, int64, string) error {
			s.metrics.streams.WithLabelValues("sotw").Inc()
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.metrics.streams.WithLabelValues("sotw").Dec()
			s.nacks.closed(id)
		},
		DeltaStreamOpenFunc: func(context.Context, int64, string) error {
			s.metrics.streams.WithLabelValues("delta").Inc()
			return nil
		},
		DeltaStreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.metrics.streams.WithLabelValues("delta").Dec()
			s.nacks.closed(id)
		},
		StreamRequestFunc: func(id int64, req *discoverygrpc.DiscoveryRequest) error {
			observeSotw(s.nacks, id, req)
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, req *discoverygrpc.DeltaDiscoveryRequest) error {
			observeDelta(s.nacks, id, req)
			return nil
		},
		StreamResponseFunc: func(_ context.Context, id int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			s.nacks.responded(id, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
		},
		StreamDeltaResponseFunc: func(id int64, _ *discoverygrpc.DeltaDiscoveryRequest, resp *discoverygrpc.DeltaDiscoveryResponse) {
			s.nacks.responded(id, resp.GetTypeUrl(), resp.GetNonce(), "")
		},
	}
}
