{{/*
TLS files and extra volumes, shared by the Deployment and the migration Job.

`.Values.tls`: a Secret (`existingSecret`) or a ConfigMap (`configMap`)
whose keys are files (CA bundles, client certificates and keys), mounted
read-only at `tls.mountPath` (the root filesystem is read-only, so files
can only come from a volume). `tls.caFiles.<section>` names a key of it;
the chart then points the client at `<mountPath>/<file>` through the
service's own prefixed environment (crates/service-kit/src/config.rs:
`<SERVICE>__SECTION__KEY`, highest precedence):

  postgres   -> <SERVICE>__POSTGRES__CA_FILE                 (postgres.ca_file)
  clickhouse -> <SERVICE>__CLICKHOUSE__CA_FILE               (clickhouse.ca_file)
  redis      -> <SERVICE>__REDIS__CA_FILE                    (redis.ca_file)
  kafka      -> <SERVICE>__KAFKA__PROPERTIES__SSL_CA_LOCATION ([kafka.properties] ssl.ca.location)

Each chart's values.yaml lists only the sections its service has (the
schema refuses the others: the service would refuse an unknown key). The
migration Job (`migrate`, prefix MIGRATE) gets the postgres and clickhouse
ones. The default mount path /etc/analytics/tls lies inside the config
ConfigMap's mount (/etc/analytics): the kubelet creates the mount point in
an API data volume itself (kubernetes#60342), so the nesting works although
that volume is read-only.

Without `tls.existingSecret`/`tls.configMap` nothing is added.
*/}}

{{/* The TLS volume's source, or nothing. Fails on contradictory values. */}}
{{- define "analytics-common.tlsEnabled" -}}
{{- $tls := .Values.tls | default dict }}
{{- if and $tls.existingSecret $tls.configMap }}
{{- fail "tls.existingSecret and tls.configMap are both set: give one (client keys belong in a Secret)" }}
{{- end }}
{{- if or $tls.existingSecret $tls.configMap }}
{{- if not (hasPrefix "/" ($tls.mountPath | default "")) }}
{{- fail (printf "tls.mountPath must be an absolute path, got %q" ($tls.mountPath | default "")) }}
{{- end }}
{{- if or (eq (trimSuffix "/" $tls.mountPath) "/etc/analytics") (eq (trimSuffix "/" $tls.mountPath) "/tmp") (hasPrefix "/tmp/" $tls.mountPath) }}
{{- fail (printf "tls.mountPath %s would hide the configuration (/etc/analytics) or /tmp: use a directory of its own such as /etc/analytics/tls" $tls.mountPath) }}
{{- end }}
true
{{- else }}
{{- range $section, $file := ($tls.caFiles | default dict) }}
{{- if $file }}
{{- fail (printf "tls.caFiles.%s is set (%s) but neither tls.existingSecret nor tls.configMap is: nothing would be mounted at tls.mountPath" $section $file) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Env entries pointing the clients at the mounted CA files.
Argument: (dict "ctx" . "prefix" "QUERY_API" "sections" (list "postgres" …)).
*/}}
{{- define "analytics-common.tlsEnv" -}}
{{- $ctx := .ctx }}
{{- if include "analytics-common.tlsEnabled" $ctx }}
{{- $tls := $ctx.Values.tls }}
{{- $keys := dict "postgres" "POSTGRES__CA_FILE" "clickhouse" "CLICKHOUSE__CA_FILE" "redis" "REDIS__CA_FILE" "kafka" "KAFKA__PROPERTIES__SSL_CA_LOCATION" }}
{{- $files := $tls.caFiles | default dict }}
{{- range $section := .sections }}
{{- $file := get $files $section }}
{{- if $file }}
{{- if or (hasPrefix "/" $file) (contains ".." $file) }}
{{- fail (printf "tls.caFiles.%s must be a file name inside tls.mountPath (a key of the Secret/ConfigMap), got %q" $section $file) }}
{{- end }}
- name: {{ printf "%s__%s" $.prefix (get $keys $section) }}
  value: {{ printf "%s/%s" (trimSuffix "/" $tls.mountPath) $file | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The container's extra volumeMounts (TLS first, then extraVolumeMounts). */}}
{{- define "analytics-common.tlsVolumeMounts" -}}
{{- if include "analytics-common.tlsEnabled" . }}
- name: tls
  mountPath: {{ .Values.tls.mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod's extra volumes (TLS first, then extraVolumes). */}}
{{- define "analytics-common.tlsVolumes" -}}
{{- if include "analytics-common.tlsEnabled" . }}
- name: tls
  {{- if .Values.tls.existingSecret }}
  secret:
    secretName: {{ .Values.tls.existingSecret }}
    # 0440: the owner and the pod's fsGroup (the service's group) read them.
    defaultMode: 288
  {{- else }}
  configMap:
    name: {{ .Values.tls.configMap }}
    defaultMode: 288
  {{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
