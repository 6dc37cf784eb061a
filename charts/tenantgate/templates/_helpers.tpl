{{/* Names. */}}
{{- define "tenantgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tenantgate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tenantgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tenantgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels. */}}
{{- define "tenantgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tenantgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "tenantgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenantgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Component labels: call with (dict "root" $ "component" "controlplane"). */}}
{{- define "tenantgate.componentLabels" -}}
{{ include "tenantgate.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tenantgate.componentSelector" -}}
{{ include "tenantgate.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images. */}}
{{- define "tenantgate.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (toString (default .default .image.tag)) -}}
{{- end -}}
{{- end -}}

{{- define "tenantgate.image" -}}
{{- include "tenantgate.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end -}}

{{/* Whether a sidecar (ext_authz + rate limit) runs: in the gateway pod or standalone. */}}
{{- define "tenantgate.sidecarComponent" -}}
{{- if .Values.gateway.enabled -}}gateway{{- else if .Values.sidecar.standalone.enabled -}}sidecar{{- end -}}
{{- end -}}

{{/* Names of the Services. */}}
{{- define "tenantgate.controlPlaneService" -}}{{ include "tenantgate.fullname" . }}-controlplane{{- end -}}
{{- define "tenantgate.sidecarService" -}}{{ include "tenantgate.fullname" . }}-sidecar{{- end -}}
{{- define "tenantgate.gatewayService" -}}{{ include "tenantgate.fullname" . }}-gateway{{- end -}}

{{/* The env every tenantgate container gets: URLs from the existing Secrets. */}}
{{- define "tenantgate.env" -}}
- name: TENANTGATE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: the name of a Secret holding the Postgres URL" .Values.database.existingSecret }}
      key: {{ .Values.database.key }}
{{- if .Values.redis.existingSecret }}
- name: TENANTGATE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.key }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}

{{/* A tenantgate container: call with (dict "root" $ "name" "tenantgate" "components" list "resources" map). */}}
{{- define "tenantgate.container" -}}
- name: {{ .name }}
  image: {{ include "tenantgate.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    - serve
    - --config=/etc/tenantgate/config.yaml
    - --components={{ join "," .components }}
  env:
    {{- include "tenantgate.env" .root | nindent 4 }}
  ports:
    {{- if or (has "authz" .components) (has "ratelimit" .components) }}
    - { name: grpc, containerPort: 9001, protocol: TCP }
    {{- end }}
    {{- if has "xds" .components }}
    - { name: xds, containerPort: 18000, protocol: TCP }
    {{- end }}
    {{- if has "provisioner" .components }}
    - { name: http, containerPort: 8080, protocol: TCP }
    {{- end }}
    - { name: admin, containerPort: 9090, protocol: TCP }
  livenessProbe:
    httpGet: { path: /healthz, port: admin }
    {{- toYaml .root.Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet: { path: /readyz, port: admin }
    {{- toYaml .root.Values.probes.readiness | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - { name: config, mountPath: /etc/tenantgate, readOnly: true }
    - { name: tmp, mountPath: /tmp }
{{- end -}}

{{/* Scheduling of a component: call with (dict "root" $ "component" "gateway" "values" .Values.gateway). */}}
{{- define "tenantgate.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .values.topologySpread }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tenantgate.componentSelector" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "tenantgate.componentSelector" . | nindent 8 }}
{{- end }}
{{- end -}}

{{/* The tenantgate config file. */}}
{{- define "tenantgate.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "listen" (dict "grpc" ":9001" "xds" ":18000" "http" ":8080" "admin" ":9090") -}}
{{- if .Values.redis.cluster -}}
{{- $rl := default (dict) (get $cfg "ratelimit") -}}
{{- $redis := default (dict) (get $rl "redis") -}}
{{- $_ := set $redis "cluster" true -}}
{{- $_ := set $rl "redis" $redis -}}
{{- $_ := set $cfg "ratelimit" $rl -}}
{{- end -}}
{{- if .Values.gateway.enabled -}}
{{- $xds := default (dict) (get $cfg "xds") -}}
{{- $listener := default (dict) (get $xds "listener") -}}
{{- $_ := set $listener "port" (int .Values.gateway.envoy.port) -}}
{{- $_ := set $xds "listener" $listener -}}
{{- $node := default (dict) (get $xds "node") -}}
{{- $_ := set $node "cluster" .Values.gateway.envoy.nodeCluster -}}
{{- $_ := set $node "admin_port" (int .Values.gateway.envoy.adminPort) -}}
{{- $_ := set $xds "node" $node -}}
{{- $_ := set $cfg "xds" $xds -}}
{{- end -}}
{{- $prov := default (dict) (get $cfg "provisioner") -}}
{{- $kube := default (dict) (get $prov "kubernetes") -}}
{{- if not (hasKey $kube "enabled") -}}
{{- $_ := set $kube "enabled" "true" -}}
{{- end -}}
{{- $_ := set $prov "kubernetes" $kube -}}
{{- if .Values.controlPlane.dnsEndpoints.enabled -}}
{{- $dns := default (dict) (get $prov "dns") -}}
{{- $_ := set $dns "provider" "external-dns" -}}
{{- $_ := set $dns "namespace" (default .Release.Namespace .Values.controlPlane.dnsEndpoints.namespace) -}}
{{- $_ := set $prov "dns" $dns -}}
{{- end -}}
{{- $_ := set $cfg "provisioner" $prov -}}
{{- toYaml $cfg -}}
{{- end -}}
