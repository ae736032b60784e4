{{/* Chart name, at most 63 characters. */}}
{{- define "braid.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the namespaced objects: <release>-braid, or the release name when it contains the chart name. */}}
{{- define "braid.fullname" -}}
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

{{/*
Name of cluster-scoped objects. It carries the release namespace, so that two
releases of the same name (say, one per team in namespaced mode) do not collide.
*/}}
{{- define "braid.clusterName" -}}
{{- printf "%s-%s" (include "braid.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "braid.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "braid.selectorLabels" -}}
app.kubernetes.io/name: {{ include "braid.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "braid.labels" -}}
helm.sh/chart: {{ include "braid.chart" . }}
{{ include "braid.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: braid
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "braid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "braid.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to the appVersion. */}}
{{- define "braid.imageRef" -}}
{{- $image := index . 0 }}
{{- $root := index . 1 }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator does inside a watched namespace. Used by the ClusterRole in
cluster-wide mode and by one Role per namespace when watchNamespaces is set.
*/}}
{{- define "braid.namespacedRules" -}}
# ParallelRuns are created by users; the operator reads them, patches kopf's
# annotations and finalizer, and writes their status.
- apiGroups: ["braid.dev"]
  resources: ["parallelruns"]
  verbs: ["get", "list", "watch", "patch", "update"]
# One AgentTask per task, owned by its ParallelRun.
- apiGroups: ["braid.dev"]
  resources: ["agenttasks"]
  verbs: ["get", "list", "watch", "create", "delete", "patch", "update"]
- apiGroups: ["braid.dev"]
  resources: ["parallelruns/status", "agenttasks/status"]
  verbs: ["get", "patch", "update"]
# Agent pods, the merge Job, and the ConfigMaps handing them their input.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["pods/status"]
  verbs: ["get"]
# a merge report too large for a termination message is read from the merge pod's log
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
# Events on ParallelRuns and AgentTasks. Secrets are only referenced by name in
# the pods, never read by the operator.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
