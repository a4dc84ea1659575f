{{/* The scaler's pod template, shared by the Deployment and the HA StatefulSet. */}}
{{- define "keda-llm-scaler.podTemplate" -}}
{{- $s := .Values.settings -}}
metadata:
  labels:
    {{- include "keda-llm-scaler.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ include "keda-llm-scaler.settingText" $s.httpPort | quote }}
    prometheus.io/path: /metrics
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "keda-llm-scaler.serviceAccountName" . }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: scaler
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      # The image's ENTRYPOINT is `keda-llm-scaler serve`; every setting comes from SCALER_* below.
      env:
        {{- range $key, $value := $s }}
        {{- if not (kindIs "invalid" $value) }}
        - name: SCALER_{{ $key | snakecase | upper }}
          value: {{ include "keda-llm-scaler.settingText" $value | quote }}
        {{- end }}
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: SCALER_TLS_CERT
          value: {{ include "keda-llm-scaler.tlsDir" . }}/tls.crt
        - name: SCALER_TLS_KEY
          value: {{ include "keda-llm-scaler.tlsDir" . }}/tls.key
        {{- if .Values.tls.clientCA.enabled }}
        - name: SCALER_TLS_CLIENT_CA
          value: {{ include "keda-llm-scaler.clientCADir" . }}/{{ .Values.tls.clientCA.key }}
        {{- end }}
        {{- end }}
        {{- if or .Values.otlpTokens.existingSecret .Values.otlpTokens.lines }}
        - name: SCALER_OTLP_TOKEN_FILE
          value: {{ include "keda-llm-scaler.otlpTokensDir" . }}/{{ .Values.otlpTokens.key }}
        {{- end }}
        {{- if or .Values.opsTokens.existingSecret .Values.opsTokens.lines }}
        - name: SCALER_OPS_TOKEN_FILE
          value: {{ include "keda-llm-scaler.opsTokensDir" . }}/{{ .Values.opsTokens.key }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: otlp-grpc
          containerPort: {{ include "keda-llm-scaler.settingText" $s.otlpGrpcPort }}
          protocol: TCP
        - name: otlp-http
          containerPort: {{ include "keda-llm-scaler.settingText" $s.otlpHttpPort }}
          protocol: TCP
        - name: scaler
          containerPort: {{ include "keda-llm-scaler.settingText" $s.scalerPort }}
          protocol: TCP
        - name: ops
          containerPort: {{ include "keda-llm-scaler.settingText" $s.httpPort }}
          protocol: TCP
      {{- if .Values.tls.enabled }}
      # The kubelet's gRPC probes cannot speak TLS; the ops port stays plain HTTP. With HA, /readyz?warm=1
      # also waits for the warm-up, as the gRPC health name "keda-llm-scaler.Warm" does without TLS.
      readinessProbe:
        httpGet:
          path: {{ ternary "/readyz?warm=1" "/readyz" .Values.ha.enabled }}
          port: ops
        periodSeconds: 5
        timeoutSeconds: 2
        failureThreshold: 2
      livenessProbe:
        httpGet:
          path: /healthz
          port: ops
        initialDelaySeconds: 10
        periodSeconds: 10
        timeoutSeconds: 2
        failureThreshold: 3
      {{- else }}
      {{- if .Values.ha.enabled }}
      # gRPC health on the scaler port: "keda-llm-scaler.Warm" is SERVING only once settings.warmup has
      # passed, so a restarted replica stays out of the Service KEDA asks until its answers are whole
      # (collectors reach it through the headless Service meanwhile), and turns NOT_SERVING on SIGTERM.
      {{- else }}
      # gRPC health on the scaler port: "externalscaler.ExternalScaler" turns NOT_SERVING on SIGTERM,
      # so the pod leaves the Service before it stops answering.
      {{- end }}
      readinessProbe:
        grpc:
          port: {{ include "keda-llm-scaler.settingText" $s.scalerPort }}
          {{- /* One replica: pushes come through the same Service and must reach the pod to warm it up. */}}
          service: {{ ternary "keda-llm-scaler.Warm" "externalscaler.ExternalScaler" .Values.ha.enabled }}
        periodSeconds: 5
        timeoutSeconds: 2
        failureThreshold: 2
      livenessProbe:
        grpc:
          port: {{ include "keda-llm-scaler.settingText" $s.scalerPort }}
        initialDelaySeconds: 10
        periodSeconds: 10
        timeoutSeconds: 2
        failureThreshold: 3
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: {{ include "keda-llm-scaler.tlsDir" . }}
          readOnly: true
        {{- if .Values.tls.clientCA.enabled }}
        - name: client-ca
          mountPath: {{ include "keda-llm-scaler.clientCADir" . }}
          readOnly: true
        {{- end }}
        {{- end }}
        {{- if or .Values.otlpTokens.existingSecret .Values.otlpTokens.lines }}
        - name: otlp-tokens
          mountPath: {{ include "keda-llm-scaler.otlpTokensDir" . }}
          readOnly: true
        {{- end }}
        {{- if or .Values.opsTokens.existingSecret .Values.opsTokens.lines }}
        - name: ops-tokens
          mountPath: {{ include "keda-llm-scaler.opsTokensDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.volumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    # Nothing writes here today; a writable /tmp keeps libraries that want one working.
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ include "keda-llm-scaler.tlsSecretName" . }}
        items:
          - key: tls.crt
            path: tls.crt
          - key: tls.key
            path: tls.key
    {{- if .Values.tls.clientCA.enabled }}
    - name: client-ca
      secret:
        secretName: {{ .Values.tls.clientCA.secretName | default (include "keda-llm-scaler.tlsSecretName" .) }}
        items:
          - key: {{ .Values.tls.clientCA.key }}
            path: {{ .Values.tls.clientCA.key }}
    {{- end }}
    {{- end }}
    {{- if or .Values.otlpTokens.existingSecret .Values.otlpTokens.lines }}
    - name: otlp-tokens
      secret:
        secretName: {{ include "keda-llm-scaler.otlpTokensSecret" . }}
    {{- end }}
    {{- if or .Values.opsTokens.existingSecret .Values.opsTokens.lines }}
    - name: ops-tokens
      secret:
        secretName: {{ include "keda-llm-scaler.opsTokensSecret" . }}
    {{- end }}
    {{- with .Values.volumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if .Values.ha.enabled }}
  # One replica per node (preferred: where possible), so losing a node leaves another answering.
  affinity:
    podAntiAffinity:
      {{- if eq .Values.ha.antiAffinity "required" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "keda-llm-scaler.selectorLabels" . | nindent 14 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: kubernetes.io/hostname
            labelSelector:
              matchLabels:
                {{- include "keda-llm-scaler.selectorLabels" . | nindent 16 }}
      {{- end }}
  {{- end }}
  {{- if .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
  {{- else if .Values.ha.enabled }}
  # And across zones where there are several.
  topologySpreadConstraints:
    - maxSkew: 1
      topologyKey: topology.kubernetes.io/zone
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "keda-llm-scaler.selectorLabels" . | nindent 10 }}
  {{- end }}
{{- end }}
