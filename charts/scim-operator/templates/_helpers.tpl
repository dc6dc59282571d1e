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
The public SCIM base URL: server.baseUrl, else https://<publicAddress.host>/scim/v2, else empty
(the server then answers with the request's Host header). A server.baseUrl on another host than
publicAddress.host is refused: identity providers would be given one address and the links another.
*/}}
{{- define "scim-operator.baseUrl" -}}
{{- $host := .Values.publicAddress.host -}}
{{- with .Values.server.baseUrl -}}
{{- if and $host (not (hasPrefix (printf "https://%s/" $host) (printf "%s/" .))) -}}
{{- fail (printf "server.baseUrl %s is not on publicAddress.host %s: leave server.baseUrl empty (it follows from the host) or make it https://%s/..." . $host $host) -}}
{{- end -}}
{{- . -}}
{{- else -}}
{{- with $host -}}https://{{ . }}/scim/v2{{- end -}}
{{- end -}}
{{- end -}}

{{/* The public base the other public paths hang off: the SCIM base URL without /scim/v2. */}}
{{- define "scim-operator.publicBase" -}}
{{- include "scim-operator.baseUrl" . | trimSuffix "/" | trimSuffix "/scim/v2" | trimSuffix "/" -}}
{{- end -}}

{{/*
Base URL of invitation links: invitations.url, else the public base plus /invitations, else
empty (the server's default, localhost).
*/}}
{{- define "scim-operator.invitationUrl" -}}
{{- if .Values.invitations.url -}}
{{- .Values.invitations.url -}}
{{- else if include "scim-operator.baseUrl" . -}}
{{- printf "%s/invitations" (include "scim-operator.publicBase" .) -}}
{{- end -}}
{{- end -}}

{{/*
The console's public URL, <public base>/console, when console.enabled. The server links and
redirects to absolute /console/... paths and its cookies are Secure, so the base must be an
https:// origin without a path.
*/}}
{{- define "scim-operator.consoleUrl" -}}
{{- if .Values.console.enabled -}}
{{- $base := include "scim-operator.publicBase" . -}}
{{- if not $base -}}
{{- fail "console.enabled needs the public address: set publicAddress.host (or server.baseUrl)" -}}
{{- end -}}
{{- if not (regexMatch "^https://[^/]+$" $base) -}}
{{- fail (printf "console.enabled needs an https:// public address at the root of its host (the console is served at /console), not %s" $base) -}}
{{- end -}}
{{- printf "%s/console" $base -}}
{{- end -}}
{{- end -}}

{{/* The paths the public address routes to the server, as a JSON list. Never /metrics or the probes. */}}
{{- define "scim-operator.publicPaths" -}}
{{- $paths := list "/scim/v2" "/invitations" -}}
{{- if .Values.console.enabled -}}{{- $paths = append $paths "/console" -}}{{- end -}}
{{- if .Values.publicAddress.adminApi -}}{{- $paths = append $paths "/api/v1" -}}{{- end -}}
{{- toJson $paths -}}
{{- end -}}

{{/* The public host, required by the object named in `what`. */}}
{{- define "scim-operator.publicHost" -}}
{{- .root.Values.publicAddress.host | required (printf "%s needs publicAddress.host, the public host name (e.g. scim.example.com)" .what) -}}
{{- end }}
