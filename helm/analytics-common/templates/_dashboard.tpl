{{/*
The service's Grafana dashboard as a ConfigMap for the Grafana sidecar
(kube-prometheus-stack / grafana chart: `sidecar.dashboards.enabled`, which
loads every ConfigMap labelled `grafana_dashboard: "1"`). The JSON is the
chart's `dashboards/<binary>.json`, a copy of deploy/grafana/dashboards/ (the
source; crates/system-tests/tests/dashboards.rs fails when a copy differs).
The chart fails if the file is missing or is not valid JSON.
*/}}
{{- define "analytics-common.dashboard" -}}
{{- if .Values.dashboards.enabled }}
{{- $file := printf "dashboards/%s.json" .Values.binary }}
{{- $json := .Files.Get $file }}
{{- if not $json }}
{{- fail (printf "%s is missing from the chart (copy it from deploy/grafana/dashboards/)" $file) }}
{{- end }}
{{- $parsed := fromJson $json }}
{{- if hasKey $parsed "Error" }}
{{- fail (printf "%s is not valid JSON: %s" $file $parsed.Error) }}
{{- end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s-dashboard" (include "analytics-common.fullname" .) | trunc 63 | trimSuffix "-" }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
    {{- with .Values.dashboards.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.dashboards.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  {{ .Values.binary }}.json: |-
    {{- $json | nindent 4 }}
{{- end }}
{{- end }}
