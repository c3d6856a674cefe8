{{/*
The Deployment. Security: numeric non-root user (the image's uid 10001),
read-only root filesystem with an emptyDir on /tmp, every capability dropped,
no privilege escalation, RuntimeDefault seccomp, no service account token and
no service links (a Service named `clickhouse` would otherwise inject
CLICKHOUSE_PORT=tcp://… into the environment, which the services read as
their ClickHouse port). Probes on the ops port: liveness /health, readiness
/ready, a startup probe on /health while the process starts.
*/}}
{{- define "analytics-common.deployment" -}}
{{- include "analytics-common.checkReplicas" . }}
{{- $fullname := include "analytics-common.fullname" . }}
{{- $secretName := include "analytics-common.secretName" . }}
{{- $probeTimeout := include "analytics-common.probeTimeout" . | int }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ int .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    {{- toYaml .Values.strategy | nindent 4 }}
  selector:
    matchLabels:
      {{- include "analytics-common.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      annotations:
        # Pods roll when their configuration changes.
        checksum/config: {{ include "analytics-common.configData" . | sha256sum }}
        {{- if and .Values.secret.create .Values.secret.env (not .Values.secret.existingSecret) }}
        checksum/secret: {{ toJson .Values.secret.env | sha256sum }}
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      labels:
        {{- include "analytics-common.selectorLabels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      enableServiceLinks: false
      automountServiceAccountToken: false
      {{- with .Values.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: {{ include "analytics-common.terminationGrace" . }}
      securityContext:
        runAsNonRoot: true
        runAsUser: {{ int .Values.securityContext.runAsUser }}
        runAsGroup: {{ int .Values.securityContext.runAsGroup }}
        fsGroup: {{ int .Values.securityContext.runAsGroup }}
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: {{ .Values.binary }}
          image: {{ include "analytics-common.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- with .Values.args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            - name: CONFIG_FILE
              value: /etc/analytics/{{ .Values.binary }}.toml
            {{- with include "analytics-common.tlsEnv" (dict "ctx" . "prefix" (.Values.binary | upper | replace "-" "_") "sections" (keys ((.Values.tls | default dict).caFiles | default dict) | sortAlpha)) }}
            {{- . | trim | nindent 12 }}
            {{- end }}
            {{- with .Values.env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- if $secretName }}
          envFrom:
            - secretRef:
                name: {{ $secretName }}
          {{- end }}
          ports:
            {{- if include "analytics-common.hasApi" . }}
            - name: http
              containerPort: {{ int .Values.ports.api }}
              protocol: TCP
            {{- end }}
            - name: ops
              containerPort: {{ int .Values.ports.ops }}
              protocol: TCP
          {{- if .Values.probes.startup.enabled }}
          startupProbe:
            httpGet:
              path: /health
              port: ops
            periodSeconds: {{ int .Values.probes.startup.periodSeconds }}
            failureThreshold: {{ int .Values.probes.startup.failureThreshold }}
            timeoutSeconds: {{ $probeTimeout }}
          {{- end }}
          livenessProbe:
            httpGet:
              path: /health
              port: ops
            periodSeconds: {{ int .Values.probes.liveness.periodSeconds }}
            failureThreshold: {{ int .Values.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ $probeTimeout }}
          readinessProbe:
            httpGet:
              path: /ready
              port: ops
            periodSeconds: {{ int .Values.probes.readiness.periodSeconds }}
            failureThreshold: {{ int .Values.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ $probeTimeout }}
          {{- if gt (int .Values.lifecycle.preStopSleepSeconds) 0 }}
          lifecycle:
            # The image has no shell: the kubelet's own sleep (Kubernetes >= 1.30).
            preStop:
              sleep:
                seconds: {{ int .Values.lifecycle.preStopSleepSeconds }}
          {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
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
            - name: tmp
              mountPath: /tmp
            {{- with include "analytics-common.tlsVolumeMounts" . }}
            {{- . | trim | nindent 12 }}
            {{- end }}
      volumes:
        - name: config
          configMap:
            name: {{ $fullname }}
        - name: tmp
          emptyDir:
            sizeLimit: {{ .Values.tmpSizeLimit | default "64Mi" }}
        {{- with include "analytics-common.tlsVolumes" . }}
        {{- . | trim | nindent 8 }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
