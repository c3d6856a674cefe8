{{/*
The migration hook: a Job running the image's `migrate` binary (the same
schemas/ the service was built with) before the release's resources are
installed or upgraded (helm.sh/hook: pre-install,pre-upgrade). A failed Job
fails the install/upgrade, so no service starts on a schema it does not
know. Hooks run before the release's ordinary resources exist, so the Job
gets its own hook ConfigMap ([clickhouse] and [postgres] of `.Values.config`)
and, with secret.env, its own hook Secret; with secret.existingSecret that
Secret must exist before the install.
*/}}
{{- define "analytics-common.migrationLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "analytics-common.name" . }}-migrate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: video-analytics
app.kubernetes.io/component: migrations
{{- end }}

{{- define "analytics-common.migrations" -}}
{{- if .Values.migrations.enabled }}
{{- $fullname := printf "%s-migrate" (include "analytics-common.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- $cfg := dict }}
{{- with .Values.config }}
{{- if hasKey . "clickhouse" }}{{ $_ := set $cfg "clickhouse" .clickhouse }}{{ end }}
{{- if hasKey . "postgres" }}{{ $_ := set $cfg "postgres" .postgres }}{{ end }}
{{- end }}
{{- $inlineSecret := and .Values.secret.create .Values.secret.env (not .Values.secret.existingSecret) }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "analytics-common.migrationLabels" . | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-10"
    helm.sh/hook-delete-policy: before-hook-creation
data:
  migrate.toml: |
    {{- include "analytics-common.toml" (dict "table" $cfg "prefix" "") | trim | nindent 4 }}
{{- if $inlineSecret }}
---
apiVersion: v1
kind: Secret
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "analytics-common.migrationLabels" . | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-10"
    helm.sh/hook-delete-policy: before-hook-creation
type: Opaque
stringData:
  {{- range $name, $value := .Values.secret.env }}
  {{ $name }}: {{ $value | toString | quote }}
  {{- end }}
{{- end }}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "analytics-common.migrationLabels" . | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  # Databases that are still starting: retried with the Job's back-off.
  backoffLimit: {{ int .Values.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ int .Values.migrations.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: {{ int .Values.migrations.ttlSecondsAfterFinished }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ include "analytics-common.name" . }}-migrate
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/component: migrations
    spec:
      restartPolicy: Never
      enableServiceLinks: false
      automountServiceAccountToken: false
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ int .Values.securityContext.runAsUser }}
        runAsGroup: {{ int .Values.securityContext.runAsGroup }}
        fsGroup: {{ int .Values.securityContext.runAsGroup }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: migrate
          image: {{ include "analytics-common.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          # Every image of docker/Dockerfile carries /usr/local/bin/migrate.
          command: ["/usr/local/bin/migrate"]
          args: ["--config", "/etc/analytics/migrate.toml"]
          {{- with include "analytics-common.tlsEnv" (dict "ctx" . "prefix" "MIGRATE" "sections" (list "clickhouse" "postgres")) }}
          env:
            {{- . | trim | nindent 12 }}
          {{- end }}
          {{- if or $inlineSecret .Values.secret.existingSecret }}
          envFrom:
            - secretRef:
                name: {{ if $inlineSecret }}{{ $fullname }}{{ else }}{{ .Values.secret.existingSecret }}{{ end }}
          {{- end }}
          resources:
            {{- toYaml .Values.migrations.resources | nindent 12 }}
          securityContext:
            runAsNonRoot: true
            runAsUser: {{ int .Values.securityContext.runAsUser }}
            runAsGroup: {{ int .Values.securityContext.runAsGroup }}
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            privileged: false
            capabilities:
              drop: ["ALL"]
          volumeMounts:
            - name: config
              mountPath: /etc/analytics
              readOnly: true
            {{- with include "analytics-common.tlsVolumeMounts" . }}
            {{- . | trim | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ $fullname }}
        {{- with include "analytics-common.tlsVolumes" . }}
        {{- . | trim | nindent 8 }}
        {{- end }}
{{- end }}
{{- end }}
