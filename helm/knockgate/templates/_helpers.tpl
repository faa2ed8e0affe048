{{/* Chart name, possibly overridden. */}}
{{- define "knockgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "knockgate.fullname" -}}
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

{{- define "knockgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "knockgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "knockgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "knockgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: port-knocking
{{- end }}

{{- define "knockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "knockgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "knockgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when the daemon's HTTP server listens on loopback only. */}}
{{- define "knockgate.httpLoopback" -}}
{{- $a := .Values.http.bindAddress }}
{{- if or (hasPrefix "127." $a) (eq $a "::1") (eq $a "localhost") }}true{{ end }}
{{- end }}

{{/* Where the kubelet's probes connect: the node's loopback, unless bound to the node IP only. */}}
{{- define "knockgate.probeHost" -}}
{{- $a := .Values.http.bindAddress }}
{{- if eq $a "hostIP" }}{{/* empty: the pod IP, which is the node IP with hostNetwork */}}
{{- else if or (eq $a "0.0.0.0") (eq $a "::") }}127.0.0.1
{{- else }}{{ $a }}
{{- end }}
{{- end }}

{{/* Refuses combinations that would render but not work, with a message saying what to change. */}}
{{- define "knockgate.validate" -}}
{{- $names := dict }}
{{- range .Values.doors }}
{{- if hasKey $names .name }}
{{- fail (printf "doors: the door name %q is used twice; every door needs its own name" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- if hasSuffix "_CLOSE" .name }}
{{- fail (printf "doors: the door name %q ends in _CLOSE, so KNOCK_DOOR_%s_SEQUENCE would read as the CLOSE_SEQUENCE of door %q; choose another name" .name .name (trimSuffix "_CLOSE" .name)) }}
{{- end }}
{{- if and (hasKey . "openFor") (eq (toString .openFor) "0") (not .closeSequence) }}
{{- fail (printf "doors[%s]: openFor 0 means \"open until the close sequence\", so closeSequence must be set" .name) }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.service.enabled (include "knockgate.httpLoopback" .) }}
{{- fail (printf "metrics.service.enabled: the daemon listens on http.bindAddress %s, which only the node itself can reach, so a Service would have no working endpoint. Set http.bindAddress to 0.0.0.0 or hostIP (and keep port %v reachable only by your monitoring), or disable metrics.service." .Values.http.bindAddress .Values.http.port) }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled: the ServiceMonitor scrapes the metrics Service; set metrics.service.enabled=true (and http.bindAddress to 0.0.0.0 or hostIP)" }}
{{- end }}
{{- end }}
