{{/*
The Ingress: only the public API routes the chart lists in
`ingress.paths` (each must be one of `publicPaths`, the routes the service
serves on its API port), always to the Service's `http` port; the ops port
(/health, /ready, /metrics) is never routed.
*/}}
{{- define "analytics-common.ingress" -}}
{{- if .Values.ingress.enabled }}
{{- if not (include "analytics-common.hasApi" .) }}
{{- fail (printf "%s has no API port: it has no Ingress" .Values.binary) }}
{{- end }}
{{- $fullname := include "analytics-common.fullname" . }}
{{- $public := .Values.publicPaths }}
{{- range .Values.ingress.paths }}
{{- if not (has .path $public) }}
{{- fail (printf "ingress.paths: %s is not a public route of %s (allowed: %s)" .path $.Values.binary (join ", " $public)) }}
{{- end }}
{{- end }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
  {{- with .Values.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with .Values.ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range .Values.ingress.hosts }}
    - host: {{ . | quote }}
      http:
        paths:
          {{- range $.Values.ingress.paths }}
          - path: {{ .path }}
            pathType: {{ .pathType | default "Prefix" }}
            backend:
              service:
                name: {{ $fullname }}
                port:
                  name: http
          {{- end }}
    {{- end }}
{{- end }}
{{- end }}
