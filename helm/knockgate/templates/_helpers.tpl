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
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "knockgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "knockgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* registry/repository@digest, or registry/repository:tag when no digest is given. */}}
{{- define "knockgate.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repository = printf "%s/%s" . $repository }}{{ end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A door's secrets, each given inline, From a Secret key or as a mounted File: value key -> daemon variable suffix. */}}
{{- define "knockgate.sequenceKeys" -}}
sequence: SEQUENCE
closeSequence: CLOSE_SEQUENCE
spaKey: SPA_KEY
spaHmacKey: SPA_HMAC_KEY
{{- end }}

{{/* A signed door's plain settings: value key -> daemon variable suffix. */}}
{{- define "knockgate.spaSettings" -}}
spaPort: SPA_PORT
spaHmacDigest: SPA_HMAC_DIGEST
spaMaxAge: SPA_MAX_AGE
spaMaxOpenFor: SPA_MAX_OPEN_FOR
spaRequireSourceAddress: SPA_REQUIRE_SOURCE_ADDRESS
spaRequireUsername: SPA_REQUIRE_USERNAME
{{- end }}

{{/* Where doors[].sequenceFile / closeSequenceFile keys are mounted (read-only). */}}
{{- define "knockgate.sequenceDir" -}}/etc/knockgate/sequences{{- end }}

{{/*
One sequence variable of a door (dict door, key: "sequence" or "closeSequence", var: its suffix):
the inline value, the value from a Secret key, or the path of the mounted Secret key in <var>_FILE.
Nothing when the door has none of them.
*/}}
{{- define "knockgate.sequenceEnv" -}}
{{- $name := printf "KNOCK_DOOR_%s_%s" .door.name .var }}
{{- $from := get .door (printf "%sFrom" .key) }}
{{- $file := get .door (printf "%sFile" .key) }}
{{- if get .door .key }}
- name: {{ $name }}
  value: {{ get .door .key | quote }}
{{- else if $from }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      {{- toYaml $from.secretKeyRef | nindent 6 }}
{{- else if $file }}
- name: {{ $name }}_FILE
  value: {{ printf "%s/%s_%s" (include "knockgate.sequenceDir" .) .door.name .var | quote }}
{{- end }}
{{- end }}

{{/* Projected-volume sources for every sequenceFile / closeSequenceFile; empty when there are none. */}}
{{- define "knockgate.sequenceFileSources" -}}
{{- $keys := include "knockgate.sequenceKeys" . | fromYaml }}
{{- range $door := .Values.doors }}
{{- range $key, $var := $keys }}
{{- with get $door (printf "%sFile" $key) }}
- secret:
    name: {{ .secretKeyRef.name }}
    items:
      - key: {{ .secretKeyRef.key | quote }}
        path: {{ printf "%s_%s" $door.name $var }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* limits: value key -> daemon variable. */}}
{{- define "knockgate.limitVars" -}}
maxTracked: KNOCK_MAX_TRACKED
maxTrackedPerPrefix: KNOCK_MAX_TRACKED_PER_PREFIX
maxGrants: KNOCK_MAX_GRANTS
maxGrantsPerPrefix: KNOCK_MAX_GRANTS_PER_PREFIX
sourcePrefixV4: KNOCK_SOURCE_PREFIX_V4
sourcePrefixV6: KNOCK_SOURCE_PREFIX_V6
hookConcurrency: KNOCK_HOOK_CONCURRENCY
{{- end }}

{{/* Where metrics.tokenSecret's key is mounted (read-only). */}}
{{- define "knockgate.metricsTokenDir" -}}/etc/knockgate/metrics{{- end }}

{{/* Monitor endpoint fields shared by the ServiceMonitor and the PodMonitor. */}}
{{- define "knockgate.scrapeEndpoint" -}}
relabelings:
  # One series per node: name it after the node, not the (identical) pod and node IP.
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
{{- with .Values.metrics.tokenSecret }}
{{- if .name }}
# The token unlocks the full set. The operator reads it from the Secret: it is never rendered.
authorization:
  type: Bearer
  credentials:
    name: {{ .name }}
    key: {{ .key | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* A door's sequence for NOTES.txt: the inline one, else where it is kept (never its value). */}}
{{- define "knockgate.sequenceShown" -}}
{{- $ref := or (dig "sequenceFrom" "secretKeyRef" "" .) (dig "sequenceFile" "secretKeyRef" "" .) }}
{{- if .sequence }}{{ .sequence }}
{{- else if $ref }}<the sequence in Secret {{ $ref.name }} (key {{ $ref.key }})>
{{- else }}<the sequence in KNOCK_DOOR_{{ .name }}_SEQUENCE>
{{- end }}
{{- end }}

{{/* "true" when existingSecret or envFrom may hold KNOCK_DOOR_* variables the values do not show. */}}
{{- define "knockgate.envSources" -}}
{{- if or .Values.existingSecret .Values.envFrom }}true{{ end }}
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
{{- $keys := include "knockgate.sequenceKeys" . | fromYaml }}
{{- range .Values.doors }}
{{- if hasKey $names .name }}
{{- fail (printf "doors: the door name %q is used twice; every door needs its own name" .name) }}
{{- end }}
{{- $_ := set $names .name true }}
{{- if hasSuffix "_CLOSE" .name }}
{{- fail (printf "doors: the door name %q ends in _CLOSE, so KNOCK_DOOR_%s_SEQUENCE would read as the CLOSE_SEQUENCE of door %q; choose another name" .name .name (trimSuffix "_CLOSE" .name)) }}
{{- end }}
{{- $door := . }}
{{- range $key, $var := $keys }}
{{- $set := list }}
{{- range $form := list $key (printf "%sFrom" $key) (printf "%sFile" $key) }}
{{- if get $door $form }}{{ $set = append $set $form }}{{ end }}
{{- end }}
{{- if gt (len $set) 1 }}
{{- fail (printf "doors[%s]: %s are set; give the %s in one form only: inline (%s), from a Secret key as a variable (%sFrom) or as a mounted file (%sFile)" $door.name (join " and " $set) $key $key $key $key) }}
{{- end }}
{{- if and $.Values.existingSecret (get $door $key) }}
{{- fail (printf "doors[%s]: %s is set inline while existingSecret %q is set. Variables in env override those from envFrom, so this inline value would replace KNOCK_DOOR_%s_%s from the Secret (and it is in the values for all to read). Remove doors[%s].%s (keep the door's other fields, or set doors: [] to define it all in the Secret), or use %sFrom." $door.name $key $.Values.existingSecret $door.name $var $door.name $key $key) }}
{{- end }}
{{- end }}
{{- $closes := or .closeSequence .closeSequenceFrom .closeSequenceFile (include "knockgate.envSources" $) }}
{{- if and (hasKey . "openFor") (eq (toString .openFor) "0") (not $closes) }}
{{- fail (printf "doors[%s]: openFor 0 means \"open until the close sequence\", so closeSequence must be set" .name) }}
{{- end }}
{{- end }}
{{- if include "knockgate.httpLoopback" . }}
{{- range $what, $enabled := dict "metrics.service.enabled" .Values.metrics.service.enabled "metrics.podMonitor.enabled" .Values.metrics.podMonitor.enabled }}
{{- if $enabled }}
{{- fail (printf "%s: the daemon listens on http.bindAddress %s, which only the node itself can reach, so nothing could scrape it. Set http.bindAddress to 0.0.0.0 or hostIP (and keep port %v reachable only by your monitoring), or disable %s." $what $.Values.http.bindAddress $.Values.http.port (trimSuffix ".enabled" $what)) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled: the ServiceMonitor scrapes the metrics Service; set metrics.service.enabled=true (and http.bindAddress to 0.0.0.0 or hostIP)" }}
{{- end }}
{{- if and .Values.metrics.prometheusRule.enabled (not (or .Values.metrics.serviceMonitor.enabled .Values.metrics.podMonitor.enabled)) }}
{{- fail "metrics.prometheusRule.enabled: the alerts select the series of the chart's ServiceMonitor or PodMonitor; enable metrics.serviceMonitor or metrics.podMonitor too" }}
{{- end }}
{{- end }}
