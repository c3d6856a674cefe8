{{/*
The service's TOML configuration: `.Values.config` (any key of the service's
own configuration, see docs/configuration and the crate READMEs) with the keys
the chart owns laid over it, so that the container ports, the probes and the
termination grace period are computed from the same numbers as the service:
http.host, http.port, http.ops_port, http.drain_delay, http.shutdown_timeout,
http.probe_timeout.
*/}}
{{- define "analytics-common.configData" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $http := get $cfg "http" | default dict }}
{{- $_ := set $http "host" "0.0.0.0" }}
{{- if include "analytics-common.hasApi" . }}
{{- $_ := set $http "port" (int .Values.ports.api) }}
{{- $_ := set $http "ops_port" (int .Values.ports.ops) }}
{{- else }}
{{- $_ := set $http "port" (int .Values.ports.ops) }}
{{- end }}
{{- $_ := set $http "drain_delay" (printf "%ds" (int .Values.lifecycle.drainDelaySeconds)) }}
{{- $_ := set $http "shutdown_timeout" (printf "%ds" (int .Values.lifecycle.shutdownTimeoutSeconds)) }}
{{- $_ := set $http "probe_timeout" (printf "%ds" (int .Values.probes.dependencyTimeoutSeconds)) }}
{{- $_ := set $cfg "http" $http }}
{{- include "analytics-common.toml" (dict "table" $cfg "prefix" "") | trim }}
{{- end }}

{{- define "analytics-common.configmap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "analytics-common.fullname" . }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
data:
  {{ .Values.binary }}.toml: |
    {{- include "analytics-common.configData" . | nindent 4 }}
{{- end }}

{{/*
The Secret of environment variables (URLs with passwords, tokens): every key
becomes a variable of the container, e.g. DATABASE_URL, CLICKHOUSE_PASSWORD,
REDIS_URL, or any QUERY_API__SECTION__KEY. Not rendered with
secret.existingSecret (then that Secret is used) or when secret.env is empty.
*/}}
{{- define "analytics-common.secret" -}}
{{- if and .Values.secret.create .Values.secret.env (not .Values.secret.existingSecret) }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "analytics-common.fullname" . }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
type: Opaque
stringData:
  {{- range $name, $value := .Values.secret.env }}
  {{ $name }}: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
{{- end }}
