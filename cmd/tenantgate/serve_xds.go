package main

import (
	"context"
	"fmt"
	"net"

	"github.com/tenantgate/tenantgate/xds"
	"github.com/tenantgate/tenantgate/xds/envoybuild"
)

// setupXDS wires the xds component into the app: the control plane learns of every tenant change
// from the snapshot store, publishes through its own debounce loop, and serves ADS on listen.xds once
// the first complete configuration is built (which is also when /readyz turns ready for it). During a
// registry outage the store keeps its last snapshot, so the last config keeps being served.
func setupXDS(_ context.Context, a *app) error {
	srv := xds.New(envoybuild.ParamsFrom(&a.cfg),
		xds.WithLogger(a.log.With("component", "xds")),
		xds.WithRegisterer(a.metrics),
		xds.WithConfigVersionMetrics(a.metrics))
	a.tenants.Subscribe(srv.OnChange)
	lis, err := net.Listen("tcp", a.cfg.Listen.XDS)
	if err != nil {
		return fmt.Errorf("listen %s (listen.xds): %w", a.cfg.Listen.XDS, err)
	}
	a.closers = append(a.closers, func() { _ = lis.Close() })
	a.runners = append(a.runners, srv.Run)
	a.servers = append(a.servers, func(ctx context.Context) error { return srv.Serve(ctx, lis) })
	a.addReadyCheck("xds config", srv.CheckReady)
	return nil
}
