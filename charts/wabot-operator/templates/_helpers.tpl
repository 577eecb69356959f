{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "wabot-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wabot-operator.fullname" -}}
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

{{- define "wabot-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. */}}
{{- define "wabot-operator.labels" -}}
helm.sh/chart: {{ include "wabot-operator.chart" . }}
{{ include "wabot-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wabot
{{- end }}

{{/* What the Deployment, Service, PDB and NetworkPolicy select the operator pods by. */}}
{{- define "wabot-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wabot-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "wabot-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wabot-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest; tag defaults to the appVersion. */}}
{{- define "wabot-operator.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when the replicas run kopf peering. */}}
{{- define "wabot-operator.peering" -}}
{{- $p := toString .Values.operator.peering }}
{{- if eq $p "auto" }}
{{- if gt (int .Values.replicaCount) 1 }}true{{ else }}false{{ end }}
{{- else if eq $p "true" }}true
{{- else }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "operator.peering=false with replicaCount > 1 would run several operators at once; use peering (auto or true)" }}
{{- end }}false
{{- end }}
{{- end }}

{{/* "true" when the operator watches the whole cluster: only when asked for (clusterWide). */}}
{{- define "wabot-operator.clusterwide" -}}
{{- if .Values.clusterWide }}
{{- if .Values.watchNamespaces }}
{{- fail "clusterWide=true and watchNamespaces are exclusive: list namespaces, or watch the whole cluster" }}
{{- end }}true
{{- else }}false
{{- end }}
{{- end }}

{{/* The namespaces the operator manages (JSON list; empty when cluster-wide): watchNamespaces,
or the release namespace when none are listed. */}}
{{- define "wabot-operator.watchedNamespaces" -}}
{{- if eq (include "wabot-operator.clusterwide" .) "true" }}
{{- list | toJson }}
{{- else if .Values.watchNamespaces }}
{{- .Values.watchNamespaces | toJson }}
{{- else }}
{{- list .Release.Namespace | toJson }}
{{- end }}
{{- end }}

{{/* "true" when the operator gets a PodDisruptionBudget (enabled: auto = replicaCount > 1). */}}
{{- define "wabot-operator.pdb" -}}
{{- $e := toString .Values.podDisruptionBudget.enabled }}
{{- if eq $e "auto" }}
{{- if gt (int .Values.replicaCount) 1 }}true{{ else }}false{{ end }}
{{- else if eq $e "true" }}true
{{- else }}false
{{- end }}
{{- end }}

{{/* minAvailable when set, else maxUnavailable (a PDB takes one of them). */}}
{{- define "wabot-operator.pdbPolicy" -}}
{{- if and (hasKey . "minAvailable") (ne (toString .minAvailable) "") (ne (toString .minAvailable) "<nil>") }}
minAvailable: {{ .minAvailable }}
{{- else }}
maxUnavailable: {{ .maxUnavailable | default 1 }}
{{- end }}
{{- end }}

{{- define "wabot-operator.botTemplatesName" -}}
{{- printf "%s-bot-templates" (include "wabot-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The send-message gateway: its own component label, so nothing selects it as the operator. */}}
{{- define "wabot-operator.gatewayName" -}}
{{- printf "%s-gateway" (include "wabot-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wabot-operator.gatewaySelectorLabels" -}}
app.kubernetes.io/name: {{ include "wabot-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "wabot-operator.gatewayLabels" -}}
helm.sh/chart: {{ include "wabot-operator.chart" . }}
{{ include "wabot-operator.gatewaySelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wabot
{{- end }}

{{/* The gateway's image: its own if set, else the operator's (ROLE=gateway runs from it). */}}
{{- define "wabot-operator.gatewayImage" -}}
{{- if .Values.gateway.image.repository }}
{{- include "wabot-operator.imageRef" (list .Values.gateway.image .) }}
{{- else }}
{{- include "wabot-operator.imageRef" (list .Values.image .) }}
{{- end }}
{{- end }}

{{/* Where the API-key Secrets are: a namespace of their own, never the release namespace by
default (it holds the database owner's DSN, and the gateway may list every Secret of the keys
namespace). */}}
{{- define "wabot-operator.gatewayKeysNamespace" -}}
{{- if .Values.gateway.keysNamespace }}
{{- .Values.gateway.keysNamespace }}
{{- else }}
{{- printf "%s-api-keys" .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* NetworkPolicy egress rules shared by the operator, the gateway and the bots: DNS in
kube-system, and the API server (networkPolicy.apiServerCIDRs/Ports; no CIDRs: any address on
those ports). */}}
{{- define "wabot-operator.egressDNS" }}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
{{- end }}
{{- define "wabot-operator.egressAPIServer" }}
- ports:
    {{- range .apiServerPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .apiServerCIDRs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end }}
