{{/*
Prometheus Operator scrape objects (monitoring.coreos.com/v1): a
ServiceMonitor on the Service's `ops` port, or a PodMonitor on the pods'
`ops` port (every replica scraped, with or without a Service). Never both.
*/}}
{{- define "analytics-common.monitoring" -}}
{{- $m := .Values.monitoring }}
{{- if and $m.serviceMonitor.enabled $m.podMonitor.enabled }}
{{- fail "monitoring: enable serviceMonitor or podMonitor, not both (every pod would be scraped twice)" }}
{{- end }}
{{- if $m.serviceMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "analytics-common.fullname" . }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
    {{- with $m.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "analytics-common.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  endpoints:
    - port: ops
      path: /metrics
      interval: {{ $m.interval }}
      scrapeTimeout: {{ $m.scrapeTimeout }}
{{- end }}
{{- if $m.podMonitor.enabled }}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ include "analytics-common.fullname" . }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
    {{- with $m.podMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "analytics-common.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  podMetricsEndpoints:
    - port: ops
      path: /metrics
      interval: {{ $m.interval }}
      scrapeTimeout: {{ $m.scrapeTimeout }}
{{- end }}
{{- end }}
