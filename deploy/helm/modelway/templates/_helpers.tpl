{{/* The chart's name, and the release's full name (truncated to the 63 characters a DNS label allows). */}}
{{- define "modelway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "modelway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelway.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "modelway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "modelway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelway.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* "true" when the gateway has a store (PostgreSQL: bundled or external), else "". */}}
{{- define "modelway.hasStore" -}}
{{- if or .Values.postgresql.enabled .Values.store.databaseUrlSecretKey -}}true{{- end -}}
{{- end -}}

{{- define "modelway.hasRedis" -}}
{{- if or .Values.redis.enabled .Values.store.redisUrlSecretKey -}}true{{- end -}}
{{- end -}}

{{/*
Settings the chart cannot render a working fleet with: stop at `helm install` / `helm template` with the reason
rather than at the pods' start.
*/}}
{{- define "modelway.validate" -}}
{{- if and .Values.postgresql.enabled .Values.store.databaseUrlSecretKey -}}
{{- fail "postgresql.enabled and store.databaseUrlSecretKey: choose the bundled PostgreSQL or an external one" -}}
{{- end -}}
{{- if and .Values.redis.enabled .Values.store.redisUrlSecretKey -}}
{{- fail "redis.enabled and store.redisUrlSecretKey: choose the bundled Redis or an external one" -}}
{{- end -}}
{{- $several := or (gt (int .Values.workers) 1) (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled -}}
{{- if and (include "modelway.hasStore" .) $several (not (include "modelway.hasRedis" .)) -}}
{{- fail "a store with several workers or replicas needs Redis (redis.enabled or store.redisUrlSecretKey): without it each process counts rate limits and budgets on its own" -}}
{{- end -}}
{{- $shutdown := int (default 25 (dig "server" "shutdown_timeout" 25 .Values.config)) -}}
{{- $needed := add (int .Values.preStopSleepSeconds) $shutdown 5 -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) $needed -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + config.server.shutdown_timeout + 5 (%d): the kubelet would kill requests the gateway is still finishing" (int .Values.terminationGracePeriodSeconds) $needed) -}}
{{- end -}}
{{- if not .Values.existingSecret -}}
{{- fail "existingSecret: the name of the Secret holding the master key (and provider keys) is required" -}}
{{- end -}}
{{- end -}}

{{/*
The gateway's modelway.yaml: .Values.config with what the chart decides written over it (where the gateway listens,
the usage files on the pod's volume). It holds no secret: the master key and the store's URLs are given by
environment variables over it (MODELWAY_SERVER__MASTER_KEY_FILE, MODELWAY_STORE__URL[_FILE], ...: deployment.yaml).
*/}}
{{- define "modelway.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $server := mergeOverwrite (dict "shutdown_timeout" 25) (default dict $cfg.server) (dict "host" "0.0.0.0" "port" (int .Values.containerPort)) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $usage := mergeOverwrite (dict "spill_path" "/var/lib/modelway/usage-spill.jsonl") (default dict $cfg.usage) -}}
{{- $_ := set $cfg "usage" $usage -}}
{{- toYaml $cfg -}}
{{- end -}}
