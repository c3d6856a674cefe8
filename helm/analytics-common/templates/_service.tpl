{{- define "analytics-common.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "analytics-common.fullname" . }}
  labels:
    {{- include "analytics-common.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  selector:
    {{- include "analytics-common.selectorLabels" . | nindent 4 }}
  ports:
    {{- if include "analytics-common.hasApi" . }}
    - name: http
      port: {{ int .Values.ports.api }}
      targetPort: http
      protocol: TCP
    {{- end }}
    # /health, /ready, /metrics: for Prometheus inside the cluster; an
    # Ingress of these charts never routes to it.
    - name: ops
      port: {{ int .Values.ports.ops }}
      targetPort: ops
      protocol: TCP
{{- end }}
