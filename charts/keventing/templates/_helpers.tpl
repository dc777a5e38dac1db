{{/* The chart's name. */}}
{{- define "keventing.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name; components append their own name to it. */}}
{{- define "keventing.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's resource name: (dict "root" $ "component" "receiver"). */}}
{{- define "keventing.componentName" -}}
{{- printf "%s-%s" (include "keventing.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keventing.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keventing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keventing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keventing.labels" -}}
helm.sh/chart: {{ include "keventing.chart" . }}
{{ include "keventing.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keventing
{{- end }}

{{/* Labels of a component's objects: (dict "root" $ "component" "receiver"). */}}
{{- define "keventing.componentLabels" -}}
{{ include "keventing.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "keventing.componentSelectorLabels" -}}
{{ include "keventing.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "keventing.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "keventing.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keventing.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The receiver Service's in-cluster URL: what the data plane uses to reach keventing's own ingress. */}}
{{- define "keventing.internalIngressUrl" -}}
{{- $port := int .Values.receiver.service.port }}
{{- $host := printf "%s.%s.svc.cluster.local" (include "keventing.componentName" (dict "root" . "component" "receiver")) .Release.Namespace }}
{{- if eq $port 80 }}
{{- printf "http://%s" $host }}
{{- else }}
{{- printf "http://%s:%d" $host $port }}
{{- end }}
{{- end }}

{{/* The receiver Service's in-cluster URL: the base of Broker addresses unless ingressUrl says otherwise. */}}
{{- define "keventing.ingressUrl" -}}
{{- if .Values.ingressUrl }}
{{- .Values.ingressUrl | trimSuffix "/" }}
{{- else }}
{{- $port := int .Values.receiver.service.port }}
{{- $host := printf "%s.%s.svc.cluster.local" (include "keventing.componentName" (dict "root" . "component" "receiver")) .Release.Namespace }}
{{- if eq $port 80 }}
{{- printf "http://%s" $host }}
{{- else }}
{{- printf "http://%s:%d" $host $port }}
{{- end }}
{{- end }}
{{- end }}

{{/* Environment every service reads (keventing/settings.py). */}}
{{- define "keventing.commonEnv" -}}
- name: KAFKA_BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required" .Values.kafka.bootstrapServers | quote }}
{{- if .Values.kafka.authSecretName }}
- name: KAFKA_AUTH_SECRET_DIR
  value: /etc/keventing/kafka-auth
{{- end }}
- name: KEVENTING_INSTANCE
  value: {{ .Values.instance | quote }}
- name: KEVENTING_CONTROL_PLANE_REPLICATION_FACTOR
  value: {{ .Values.defaultTopic.replicationFactor | quote }}
- name: KEVENTING_HTTP_HOST
  value: "0.0.0.0"
- name: KEVENTING_LOG_LEVEL
  value: {{ .Values.logging.level | quote }}
- name: KEVENTING_LOG_FORMAT
  value: {{ .Values.logging.format | quote }}
{{- with .Values.tracing }}
- name: OTEL_TRACES_EXPORTER
  value: {{ .exporter | quote }}
{{- if ne .exporter "none" }}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
  value: {{ .endpoint | quote }}
{{- end }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplingRate | quote }}
{{- end }}
{{- end }}
{{- with .Values.security }}
- name: KEVENTING_TRANSPORT_ENCRYPTION
  value: {{ .transportEncryption | quote }}
- name: KEVENTING_AUTHENTICATION_OIDC
  value: {{ .authenticationOidc | quote }}
- name: KEVENTING_DEFAULT_AUTHORIZATION_MODE
  value: {{ .defaultAuthorizationMode | quote }}
{{- if .oidcIssuer }}
- name: KEVENTING_OIDC_ISSUER
  value: {{ .oidcIssuer | quote }}
{{- end }}
{{- end }}
{{- if .Values.security.tlsSecretName }}
- name: KEVENTING_TLS_CERT_FILE
  value: /etc/keventing/tls/tls.crt
- name: KEVENTING_TLS_KEY_FILE
  value: /etc/keventing/tls/tls.key
- name: KEVENTING_TLS_TRUST_BUNDLE
  value: /etc/keventing/tls/ca.crt
- name: KEVENTING_INGRESS_CA_FILE
  value: /etc/keventing/tls/ca.crt
- name: KEVENTING_INGRESS_HTTPS_URL
  value: {{ printf "https://%s.%s.svc.cluster.local" (include "keventing.componentName" (dict "root" . "component" "receiver")) .Release.Namespace | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The Secret holding the contract's key: security.contractKeySecretName, or the one the chart makes. */}}
{{- define "keventing.contractKeySecretName" -}}
{{- .Values.security.contractKeySecretName | default (printf "%s-contract-key" (include "keventing.fullname" .)) }}
{{- end }}

{{/* The contract's key, for the services that follow the contract (the controller signs with it). */}}
{{- define "keventing.contractKeyEnv" -}}
- name: KEVENTING_CONTRACT_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "keventing.contractKeySecretName" . }}
      key: contract-key
{{- end }}

{{/* Readiness on /readyz (contract loaded, Kafka connected), liveness on /healthz, on the port named http. */}}
{{- define "keventing.probes" -}}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: {{ .Values.probes.liveness.initialDelaySeconds }}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
{{- end }}

{{/* Pod-level settings shared by every Deployment. */}}
{{- define "keventing.podSpec" -}}
serviceAccountName: {{ include "keventing.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if .Values.kafka.authSecretName }}
  - name: kafka-auth
    secret:
      secretName: {{ .Values.kafka.authSecretName }}
      defaultMode: 0400
  {{- end }}
  {{- if .Values.security.tlsSecretName }}
  - name: tls
    secret:
      secretName: {{ .Values.security.tlsSecretName }}
      defaultMode: 0400
  {{- end }}
{{- end }}

{{/* Container-level settings shared by every Deployment (image, security, /tmp). */}}
{{- define "keventing.container" -}}
image: {{ include "keventing.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if .Values.kafka.authSecretName }}
  - name: kafka-auth
    mountPath: /etc/keventing/kafka-auth
    readOnly: true
  {{- end }}
  {{- if .Values.security.tlsSecretName }}
  - name: tls
    mountPath: /etc/keventing/tls
    readOnly: true
  {{- end }}
{{- end }}
