{{/*
TOML from a values map: scalars first, then one [table] per nested map.
Helm's own toToml writes whole numbers read from values files as floats
(`port = 8123.0`), which the services' integer keys refuse; here every
scalar is written as JSON, which is valid TOML for strings, numbers, booleans
and arrays of them (8123 stays 8123). Keys that are not bare TOML keys
(`"security.protocol"` in kafka.properties) are quoted.
Call: include "analytics-common.toml" (dict "table" $map "prefix" "")
*/}}
{{- define "analytics-common.tomlKey" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . }}{{ . }}{{ else }}{{ toJson . }}{{ end }}
{{- end }}

{{- define "analytics-common.toml" -}}
{{- $prefix := .prefix }}
{{- range $key, $value := .table }}
{{- if not (kindIs "map" $value) }}
{{ include "analytics-common.tomlKey" $key }} = {{ toJson $value }}
{{- end }}
{{- end }}
{{- range $key, $value := .table }}
{{- if kindIs "map" $value }}
{{- $name := include "analytics-common.tomlKey" $key }}
{{- if $prefix }}{{ $name = printf "%s.%s" $prefix $name }}{{ end }}

[{{ $name }}]
{{- include "analytics-common.toml" (dict "table" $value "prefix" $name) }}
{{- end }}
{{- end }}
{{- end }}
