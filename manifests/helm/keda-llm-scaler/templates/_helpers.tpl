{{/* Every object's name: kedify's Service name unless fullnameOverride says otherwise. */}}
{{- define "keda-llm-scaler.fullname" -}}
{{- .Values.fullnameOverride | default "keda-otel-scaler" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keda-llm-scaler.headlessName" -}}
{{- printf "%s-headless" (include "keda-llm-scaler.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels of manifests/base, then Helm's standard ones. */}}
{{- define "keda-llm-scaler.labels" -}}
app.kubernetes.io/name: keda-llm-scaler
app.kubernetes.io/component: external-scaler
app.kubernetes.io/part-of: keda
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keda-llm-scaler.selectorLabels" -}}
app.kubernetes.io/name: keda-llm-scaler
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keda-llm-scaler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- .Values.serviceAccount.name | default (include "keda-llm-scaler.fullname" .) }}
{{- else }}
{{- .Values.serviceAccount.name | default "default" }}
{{- end }}
{{- end }}

{{- define "keda-llm-scaler.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "keda-llm-scaler.fullname" .)) }}
{{- end }}

{{/*
A setting as its environment variable's text. Values arrive as JSON numbers (float64), which Go
would print as 1e+06: whole numbers are printed as integers.
*/}}
{{- define "keda-llm-scaler.settingText" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/* Where the Secrets are mounted: whole directories, so the kubelet's updates reach the scaler. */}}
{{- define "keda-llm-scaler.tlsDir" -}}/etc/keda-llm-scaler/tls{{- end }}
{{- define "keda-llm-scaler.clientCADir" -}}/etc/keda-llm-scaler/client-ca{{- end }}
{{- define "keda-llm-scaler.otlpTokensDir" -}}/etc/keda-llm-scaler/otlp-tokens{{- end }}
{{- define "keda-llm-scaler.opsTokensDir" -}}/etc/keda-llm-scaler/ops-tokens{{- end }}

{{- define "keda-llm-scaler.otlpTokensSecret" -}}
{{- .Values.otlpTokens.existingSecret | default (printf "%s-otlp-tokens" (include "keda-llm-scaler.fullname" .)) }}
{{- end }}

{{- define "keda-llm-scaler.opsTokensSecret" -}}
{{- .Values.opsTokens.existingSecret | default (printf "%s-ops-tokens" (include "keda-llm-scaler.fullname" .)) }}
{{- end }}

{{/* Checks the schema cannot express; each message names the values. */}}
{{- define "keda-llm-scaler.checks" -}}
{{- $s := .Values.settings }}
{{- $ports := dict }}
{{- range $key := list "otlpGrpcPort" "otlpHttpPort" "scalerPort" "httpPort" }}
{{- $port := index $s $key | toString }}
{{- if hasKey $ports $port }}
{{- fail (printf "settings.%s and settings.%s are both %s: the scaler's ports must differ" (get $ports $port) $key $port) }}
{{- end }}
{{- $_ := set $ports $port $key }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name: name the cert-manager Issuer or ClusterIssuer that signs the scaler's certificate" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.enabled) }}
{{- fail "tls.certManager.enabled needs tls.enabled: the certificate would be made but never served" }}
{{- end }}
{{- if and .Values.tls.clientCA.enabled (not .Values.tls.enabled) }}
{{- fail "tls.clientCA.enabled needs tls.enabled: client certificates need TLS" }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (not .Values.networkPolicy.senderPodLabels) (not .Values.networkPolicy.kservePredictors) }}
{{- fail "networkPolicy: senderPodLabels is empty and kservePredictors false, so no pod could push OTLP (an empty `from` would admit every source)" }}
{{- end }}
{{- range .Values.extraEnv }}
{{- if hasPrefix "SCALER_" .name }}
{{- fail (printf "extraEnv: %s is a serve flag; set it under settings (or tls, otlpTokens, opsTokens) instead" .name) }}
{{- end }}
{{- end }}
{{- if and .Values.otlpTokens.existingSecret .Values.otlpTokens.lines }}
{{- fail "otlpTokens: give existingSecret or lines, not both" }}
{{- end }}
{{- if and .Values.opsTokens.existingSecret .Values.opsTokens.lines }}
{{- fail "opsTokens: give existingSecret or lines, not both" }}
{{- end }}
{{- end }}
