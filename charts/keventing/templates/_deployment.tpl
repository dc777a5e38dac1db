{{/*
A keventing service's Deployment: one container running `kev <command>`, its ops port named http
(/readyz, /healthz, /metrics). Called with a dict:
  root      the chart's root context
  component the name (labels, resource names, container name)
  args      the kev command line (a list)
  values    the component's values (port, replicas, resources, extraEnv, scheduling)
  env       the component's own environment, rendered (optional)
  replicas  overrides values.replicas (optional)
  recreate  true: never two pods at once, not even during a rollout (optional)
  apiAccess true: the pod gets its service account's token (the Kubernetes-mode controller and sources,
            the dispatcher with authentication-oidc)
*/}}
{{- define "keventing.deployment" -}}
{{- $root := .root }}
{{- $values := .values }}
{{- $component := dict "root" $root "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "keventing.componentName" $component }}
  labels:
    {{- include "keventing.componentLabels" $component | nindent 4 }}
spec:
  replicas: {{ if hasKey . "replicas" }}{{ .replicas }}{{ else }}{{ $values.replicas }}{{ end }}
  {{- if .recreate }}
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "keventing.componentSelectorLabels" $component | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "keventing.componentLabels" $component | nindent 8 }}
      {{- with $values.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      {{- include "keventing.podSpec" $root | nindent 6 }}
      automountServiceAccountToken: {{ .apiAccess | default false }}
      {{- with $values.terminationGracePeriodSeconds }}
      terminationGracePeriodSeconds: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          {{- include "keventing.container" $root | nindent 10 }}
          args: {{ toJson .args }}
          ports:
            - name: http
              containerPort: {{ $values.port }}
              protocol: TCP
            {{- if and (eq .component "receiver") $root.Values.security.tlsSecretName }}
            - name: https
              containerPort: 8443
              protocol: TCP
            {{- end }}
          env:
            {{- include "keventing.commonEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with $values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- include "keventing.probes" $root | nindent 10 }}
          {{- with $values.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
