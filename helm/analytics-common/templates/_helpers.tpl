{{/*
Names, labels and the derived settings every template shares.
A service chart sets `.Values.binary` (query-api, …) and
`.Values.ports` / `.Values.lifecycle` / `.Values.probes`; everything below
is computed from them so that the probes, the container ports and the
rendered TOML can never disagree.
*/}}

{{- define "analytics-common.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "analytics-common.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "analytics-common.selectorLabels" -}}
app.kubernetes.io/name: {{ include "analytics-common.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "analytics-common.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "analytics-common.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: video-analytics
app.kubernetes.io/component: {{ .Values.component | default "service" }}
{{- end }}

{{- define "analytics-common.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* True when the service has an API port of its own (not a worker). */}}
{{- define "analytics-common.hasApi" -}}
{{- if gt (int .Values.ports.api) 0 }}true{{ end }}
{{- end }}

{{/* The port of /health, /ready and /metrics. */}}
{{- define "analytics-common.opsPort" -}}
{{- int .Values.ports.ops }}
{{- end }}

{{/* The name of the Secret whose keys become environment variables, if any. */}}
{{- define "analytics-common.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else if and .Values.secret.create .Values.secret.env }}
{{- include "analytics-common.fullname" . }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: given, or preStop sleep + drain delay +
shutdown timeout + the service's extra flush + 5 s margin. The service
turns unready at SIGTERM, keeps serving for http.drain_delay, then lets
in-flight work finish within http.shutdown_timeout (the processor's last
batch flush: lifecycle.extraShutdownSeconds), so the kubelet must not
SIGKILL before the sum.
*/}}
{{- define "analytics-common.terminationGrace" -}}
{{- $l := .Values.lifecycle }}
{{- $needed := add (int $l.preStopSleepSeconds) (int $l.drainDelaySeconds) (int $l.shutdownTimeoutSeconds) (int $l.extraShutdownSeconds) }}
{{- if $l.terminationGracePeriodSeconds }}
{{- if lt (int $l.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "lifecycle.terminationGracePeriodSeconds (%d) is below preStop + drain + shutdown + extra (%d s): the pod would be killed mid-shutdown" (int $l.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- int $l.terminationGracePeriodSeconds }}
{{- else }}
{{- add $needed 5 }}
{{- end }}
{{- end }}

{{/*
A probe's timeoutSeconds: above http.probe_timeout, since /ready waits for
every dependency probe up to that long before answering.
*/}}
{{- define "analytics-common.probeTimeout" -}}
{{- add (int .Values.probes.dependencyTimeoutSeconds) 1 }}
{{- end }}

{{/* Replica rules the chart enforces at render time. */}}
{{- define "analytics-common.checkReplicas" -}}
{{- $r := .Values.replicaRules | default dict }}
{{- if $r.exactlyOne }}
{{- if ne (int .Values.replicaCount) 1 }}
{{- fail (printf "%s runs exactly one replica (replicaCount is %d): see docs/deploy.md, Scaling" .Values.binary (int .Values.replicaCount)) }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail (printf "%s cannot autoscale: it runs exactly one replica" .Values.binary) }}
{{- end }}
{{- end }}
{{- if $r.maxReplicas }}
{{- if gt (int .Values.replicaCount) (int $r.maxReplicas) }}
{{- fail (printf "replicaCount %d is above replicaRules.maxReplicas %d (the raw topic's partitions: a consumer more than partitions sits idle)" (int .Values.replicaCount) (int $r.maxReplicas)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.maxReplicas) (int $r.maxReplicas)) }}
{{- fail (printf "autoscaling.maxReplicas %d is above replicaRules.maxReplicas %d (the raw topic's partitions)" (int .Values.autoscaling.maxReplicas) (int $r.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end }}
