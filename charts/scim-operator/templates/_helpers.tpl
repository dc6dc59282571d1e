{{- define "scim-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scim-operator.fullname" -}}
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

{{- define "scim-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "scim-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "scim-operator.selector" -}}
app.kubernetes.io/name: {{ include "scim-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "scim-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "scim-operator.keySecret" -}}
{{- .Values.bootstrapKey.existingSecret | default (printf "%s-key" (include "scim-operator.fullname" .)) -}}
{{- end -}}

{{- define "scim-operator.external" -}}
{{- if .Values.database.external.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "scim-operator.scimUrl" -}}
{{- .Values.operator.scimUrl | default (printf "http://%s-server.%s.svc:%v/scim/v2" (include "scim-operator.fullname" .) .Release.Namespace .Values.server.service.port) -}}
{{- end -}}

{{/* Pod and container hardening shared by both components. */}}
{{- define "scim-operator.podSecurity" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "scim-operator.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/*
Base URL of invitation links: invitations.url, else server.baseUrl without its /scim/v2 plus
/invitations, else empty (the server's default, localhost).
*/}}
{{- define "scim-operator.invitationUrl" -}}
{{- if .Values.invitations.url -}}
{{- .Values.invitations.url -}}
{{- else if .Values.server.baseUrl -}}
{{- printf "%s/invitations" (.Values.server.baseUrl | trimSuffix "/" | trimSuffix "/scim/v2" | trimSuffix "/") -}}
{{- end -}}
{{- end }}
