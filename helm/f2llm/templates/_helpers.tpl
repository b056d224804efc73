{{- define "f2llm.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "f2llm.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "f2llm.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The Secret holding AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the store. */}}
{{- define "f2llm.s3Secret" -}}
{{- if eq .Values.objectStore.mode "external" -}}{{ required "objectStore.external.existingSecret is required" .Values.objectStore.external.existingSecret }}
{{- else -}}{{ .Values.objectStore.minio.existingSecret | default (printf "%s-s3" (include "f2llm.fullname" .)) }}{{- end -}}
{{- end -}}

{{- define "f2llm.s3Endpoint" -}}
{{- if eq .Values.objectStore.mode "external" -}}{{ required "objectStore.external.endpoint is required" .Values.objectStore.external.endpoint }}
{{- else -}}{{ printf "%s-minio.%s.svc:9000" (include "f2llm.fullname" .) .Release.Namespace }}{{- end -}}
{{- end -}}

{{- define "f2llm.s3UseHTTPS" -}}
{{- if eq .Values.objectStore.mode "external" -}}{{ .Values.objectStore.external.useHTTPS }}{{- else -}}false{{- end -}}
{{- end -}}

{{/* Restricted pod security: every container of the chart. */}}
{{- define "f2llm.containerSecurity" -}}
securityContext:
  runAsNonRoot: true
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  capabilities: {drop: [ALL]}
  seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "f2llm.podSecurity" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ .uid | default 1000 }}
  runAsGroup: {{ .uid | default 1000 }}
  fsGroup: {{ .uid | default 1000 }}
  seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{/* Where KFP runs execute (standalone: KFP's namespace; multi-user: a profile namespace). */}}
{{- define "f2llm.runsNamespace" -}}{{ .Values.kfp.namespace | default .Release.Namespace }}{{- end -}}

{{/* The release's namespace and the runs', once each: a JSON list. */}}
{{- define "f2llm.namespaces" -}}
{{- list .Release.Namespace (include "f2llm.runsNamespace" .) | uniq | toJson -}}
{{- end -}}

{{- define "f2llm.image" -}}{{ printf "%s/f2llm-%s:%s" .root.Values.image.registry .name .root.Values.image.tag }}{{- end -}}

{{/* GPU pods: scheduled onto GPU nodes, tolerating their taint. */}}
{{- define "f2llm.gpuPlacement" -}}
{{- with .nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The Secret whose key OPTUNA_STORAGE is the study storage's URL; empty with optuna.database none. */}}
{{- define "f2llm.optunaSecret" -}}
{{- if eq .Values.optuna.database "external" -}}{{ required "optuna.external.existingSecret is required" .Values.optuna.external.existingSecret }}
{{- else if eq .Values.optuna.database "postgres" -}}{{ printf "%s-optuna" (include "f2llm.fullname" .) }}{{- end -}}
{{- end -}}
