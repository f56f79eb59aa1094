{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "pushrelay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: the release name, suffixed with the chart's unless it already contains it. */}}
{{- define "pushrelay.fullname" -}}
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

{{- define "pushrelay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pushrelay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushrelay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pushrelay.labels" -}}
helm.sh/chart: {{ include "pushrelay.chart" . }}
{{ include "pushrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: push-relay
{{- end -}}

{{- define "pushrelay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "pushrelay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Whether the spool is an external NATS JetStream (then: a Deployment, any number of replicas). */}}
{{- define "pushrelay.externalSpool" -}}
{{- if or .Values.spool.natsUrl .Values.spool.natsUrlSecret.name -}}true{{- end -}}
{{- end -}}

{{/* Whether the ingress listener serves TLS: from tls.existingSecret, or config.tls set by hand. */}}
{{- define "pushrelay.tlsEnabled" -}}
{{- $tls := get (.Values.config | default dict) "tls" | default dict -}}
{{- if or .Values.tls.existingSecret (get $tls "cert_file") -}}true{{- end -}}
{{- end -}}

{{/* Whether the ingress listener requires client certificates (then HTTP probes cannot work). */}}
{{- define "pushrelay.mtls" -}}
{{- $tls := get (.Values.config | default dict) "tls" | default dict -}}
{{- if or (and .Values.tls.existingSecret .Values.tls.clientCA) (get $tls "client_ca_file") -}}true{{- end -}}
{{- end -}}

{{/*
The relay's configuration file: .Values.config with the keys the chart owns set.
*/}}
{{- define "pushrelay.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $_ := set $cfg "listen" ":8066" -}}
{{- $metrics := deepCopy (get $cfg "metrics" | default dict) -}}
{{- $_ = set $metrics "listen" ":9066" -}}
{{- $_ = set $cfg "metrics" $metrics -}}
{{- $spool := deepCopy (get $cfg "spool" | default dict) -}}
{{- $_ = set $spool "dir" "/var/lib/pushrelay" -}}
{{- if .Values.spool.natsUrl -}}
{{- $_ = set $spool "nats_url" .Values.spool.natsUrl -}}
{{- end -}}
{{- $_ = set $cfg "spool" $spool -}}
{{- if .Values.tls.existingSecret -}}
{{- $tls := deepCopy (get $cfg "tls" | default dict) -}}
{{- $_ = set $tls "cert_file" "/etc/pushrelay/tls/tls.crt" -}}
{{- $_ = set $tls "key_file" "/etc/pushrelay/tls/tls.key" -}}
{{- if .Values.tls.clientCA -}}
{{- $_ = set $tls "client_ca_file" "/etc/pushrelay/tls/ca.crt" -}}
{{- end -}}
{{- $_ = set $cfg "tls" $tls -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Refuse combinations that cannot work, with a message that says what to do. */}}
{{- define "pushrelay.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not (include "pushrelay.externalSpool" .)) -}}
{{- fail "replicaCount > 1 needs a shared spool: set spool.natsUrl (or spool.natsUrlSecret) to an external NATS JetStream; the embedded spool belongs to one relay" -}}
{{- end -}}
{{- if lt (int .Values.terminationGracePeriodSeconds) 31 -}}
{{- fail "terminationGracePeriodSeconds must be above 30: the relay takes up to 30 s to drain on SIGTERM" -}}
{{- end -}}
{{- if not (get (.Values.config | default dict) "apps") -}}
{{- fail "config.apps: at least one app is required (see values.yaml)" -}}
{{- end -}}
{{- if and .Values.spool.natsUrlSecret.name (not .Values.spool.natsUrlSecret.key) -}}
{{- fail "spool.natsUrlSecret.key: required with spool.natsUrlSecret.name" -}}
{{- end -}}
{{- end -}}

{{/* The pod template shared by the StatefulSet and the Deployment. */}}
{{- define "pushrelay.podTemplate" -}}
metadata:
  labels:
    {{- include "pushrelay.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A new configuration rolls the pods (Kubernetes does not signal SIGHUP on a ConfigMap change).
    checksum/config: {{ include "pushrelay.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "pushrelay.serviceAccountName" . }}
  # The relay never talks to the Kubernetes API.
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: pushrelay
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve"]
      env:
        # Also what `kubectl exec <pod> -- /pushrelay check` and `policy explain` read.
        - name: PUSHRELAY_CONFIG
          value: /etc/pushrelay/config/pushrelay.yaml
        {{- if .Values.spool.natsUrlSecret.name }}
        - name: PUSHRELAY_SPOOL_NATS_URL
          valueFrom:
            secretKeyRef:
              name: {{ .Values.spool.natsUrlSecret.name }}
              key: {{ .Values.spool.natsUrlSecret.key }}
        {{- end }}
        {{- if dig "limits" "memory" "" (.Values.resources | default dict) }}
        - name: GOMEMLIMIT
          valueFrom:
            resourceFieldRef:
              resource: limits.memory
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: push
          containerPort: 8066
          protocol: TCP
        - name: metrics
          containerPort: 9066
          protocol: TCP
      {{- $scheme := ternary "HTTPS" "HTTP" (eq (include "pushrelay.tlsEnabled" .) "true") }}
      {{- $mtls := eq (include "pushrelay.mtls" .) "true" }}
      {{- range $probe := list "startupProbe" "livenessProbe" "readinessProbe" }}
      {{ $probe }}:
        {{- if $mtls }}
        # Mutual TLS: the kubelet has no client certificate, so only the connection is checked.
        tcpSocket:
          port: push
        {{- else }}
        httpGet:
          path: {{ ternary "/readyz" "/healthz" (eq $probe "readinessProbe") }}
          port: push
          scheme: {{ $scheme }}
        {{- end }}
        {{- toYaml (index $.Values $probe) | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/pushrelay/config
          readOnly: true
        {{- if .Values.credentials.existingSecret }}
        - name: credentials
          mountPath: {{ .Values.credentials.mountPath }}
          readOnly: true
        {{- end }}
        {{- if .Values.tls.existingSecret }}
        - name: tls
          mountPath: /etc/pushrelay/tls
          readOnly: true
        {{- end }}
        {{- if not (include "pushrelay.externalSpool" .) }}
        - name: spool
          mountPath: /var/lib/pushrelay
        {{- end }}
  volumes:
    - name: config
      {{- if .Values.configAsSecret }}
      secret:
        secretName: {{ include "pushrelay.fullname" . }}-config
      {{- else }}
      configMap:
        name: {{ include "pushrelay.fullname" . }}-config
      {{- end }}
    {{- if .Values.credentials.existingSecret }}
    - name: credentials
      secret:
        secretName: {{ .Values.credentials.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if .Values.tls.existingSecret }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.existingSecret }}
        defaultMode: 0440
    {{- end }}
    {{- if and (not (include "pushrelay.externalSpool" .)) (not .Values.spool.persistence.enabled) }}
    - name: spool
      emptyDir: {}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The StatefulSet's headless governing Service: the full name, cut to leave room for "-headless". */}}
{{- define "pushrelay.headlessName" -}}
{{- printf "%s-headless" (include "pushrelay.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}
