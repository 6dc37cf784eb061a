{{/*
The gateway Envoy's bootstrap: its node, its admin interface on loopback only, and ADS from the control
plane for everything else (listeners, routes, clusters, including the clusters reaching the tenantgate
sidecar on 127.0.0.1:9001). A static health listener exposes only /ready and /stats/prometheus of the
admin interface to the kubelet and to Prometheus. The chart test decodes it strictly into
envoy.config.bootstrap.v3.Bootstrap and validates every message.
*/}}
{{- define "tenantgate.envoyBootstrap" -}}
# What `tenantgate bootstrap --role gateway` writes for this release, plus the health listener and the
# envoy_admin cluster behind it. The node id is each pod's name (--service-node overrides it).
node:
  id: {{ include "tenantgate.fullname" . }}-gateway
  cluster: {{ .Values.gateway.envoy.nodeCluster }}
  metadata:
    tenantgate_role: gateway
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: {{ .Values.gateway.envoy.adminPort }} }
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
      - envoy_grpc: { cluster_name: tenantgate_xds }
  cds_config:
    resource_api_version: V3
    ads: {}
  lds_config:
    resource_api_version: V3
    ads: {}
overload_manager:
  resource_monitors:
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ .Values.gateway.envoy.maxConnections }}
static_resources:
  clusters:
    - name: tenantgate_xds
      type: STRICT_DNS
      connect_timeout: 1s
      dns_lookup_family: V4_PREFERRED
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options:
              connection_keepalive: { interval: 30s, timeout: 5s }
      load_assignment:
        cluster_name: tenantgate_xds
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ include "tenantgate.controlPlaneService" . }}.{{ .Release.Namespace }}.svc
                      port_value: 18000
    - name: envoy_admin
      type: STATIC
      connect_timeout: 0.25s
      load_assignment:
        cluster_name: envoy_admin
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: { address: 127.0.0.1, port_value: {{ .Values.gateway.envoy.adminPort }} }
  listeners:
    - name: envoy_health
      address:
        socket_address: { address: 0.0.0.0, port_value: {{ .Values.gateway.envoy.healthPort }} }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: envoy_health
                route_config:
                  name: envoy_health
                  virtual_hosts:
                    - name: envoy_health
                      domains: ["*"]
                      routes:
                        - match: { path: /ready }
                          route: { cluster: envoy_admin }
                        - match: { path: /stats/prometheus }
                          route: { cluster: envoy_admin }
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}
