{{/*
Names, labels and the derived settings every template shares. All helpers are
prefixed "retrainer." so they never clash with a parent chart's.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "retrainer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The resource name prefix: fullnameOverride, or the release name (plus the chart name when the release name lacks it). */}}
{{- define "retrainer.fullname" -}}
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

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "retrainer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The stable labels selectors use; never change them on upgrade. */}}
{{- define "retrainer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "retrainer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels every resource carries. */}}
{{- define "retrainer.labels" -}}
helm.sh/chart: {{ include "retrainer.chart" . }}
{{ include "retrainer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: retrainer
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "retrainer.operatorServiceAccountName" -}}
{{- default (printf "%s-operator" (include "retrainer.fullname" .)) .Values.serviceAccount.name }}
{{- end }}

{{/* The operator image reference. */}}
{{- define "retrainer.operatorImage" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The trainer image reference (RETRAINER_TRAINER_IMAGE). */}}
{{- define "retrainer.trainerImage" -}}
{{- printf "%s:%s" .Values.trainer.image.repository (default .Chart.AppVersion .Values.trainer.image.tag) }}
{{- end }}

{{/*
The repositories spec.image may name (RETRAINER_ALLOWED_TRAINER_IMAGES), comma-separated:
trainer.allowedImages, or when empty the trainer image's own repository.
*/}}
{{- define "retrainer.allowedTrainerImages" -}}
{{- if .Values.trainer.allowedImages }}
{{- join "," .Values.trainer.allowedImages }}
{{- else }}
{{- .Values.trainer.image.repository }}
{{- end }}
{{- end }}

{{/* True (non-empty) in cluster-wide mode. */}}
{{- define "retrainer.clusterWide" -}}
{{- if not .Values.watchNamespaces }}true{{ end }}
{{- end }}

{{/*
The namespaces training pods run in that the chart provisions (trainer
ServiceAccount, credentials Secret, models claim): the release namespace and each
watched namespace, comma-separated, without duplicates.
*/}}
{{- define "retrainer.jobNamespaces" -}}
{{- prepend .Values.watchNamespaces .Release.Namespace | uniq | join "," }}
{{- end }}

{{/* The MLflow tracking URI (RETRAINER_MLFLOW_TRACKING_URI). */}}
{{- define "retrainer.mlflowTrackingUri" -}}
{{- if .Values.mlflow.trackingUri }}
{{- .Values.mlflow.trackingUri }}
{{- else if .Values.mlflow.enabled }}
{{- printf "http://%s-mlflow.%s.svc:5000" (include "retrainer.fullname" .) .Release.Namespace }}
{{- else }}
{{- "http://retrainer-mlflow:5000" }}
{{- end }}
{{- end }}

{{/* The S3 endpoint (RETRAINER_S3_ENDPOINT). */}}
{{- define "retrainer.s3Endpoint" -}}
{{- if .Values.s3.endpoint }}
{{- .Values.s3.endpoint }}
{{- else if .Values.minio.enabled }}
{{- printf "http://%s-minio.%s.svc:9000" (include "retrainer.fullname" .) .Release.Namespace }}
{{- else }}
{{- "http://retrainer-minio:9000" }}
{{- end }}
{{- end }}

{{/* The endpoint of the bundled MinIO, host:port only (for mc). */}}
{{- define "retrainer.minioHostPort" -}}
{{- printf "%s-minio.%s.svc:9000" (include "retrainer.fullname" .) .Release.Namespace }}
{{- end }}

{{/* AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from s3.secretName: credentials never sit in plain env values. */}}
{{- define "retrainer.s3CredentialEnv" -}}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.secretName }}
      key: accessKey
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.s3.secretName }}
      key: secretKey
{{- end }}

{{/*
The namespaced rules of the operator, shared by the ClusterRole (cluster-wide
mode) and each Role (namespaced mode). One rule per need, as config.md lists them.
*/}}
{{- define "retrainer.operatorRules" -}}
# Watch RetrainJobs; patch them for Kopf's finalizer and its bookkeeping annotations; create
# the runs a ModelLine starts and delete those past its history limits.
- apiGroups: [retrainer.dev]
  resources: [retrainjobs]
  verbs: [get, list, watch, patch, create, delete]
# Watch ModelLines (schedule, corrections); create a bare one for a line that has none; patch
# them for Kopf's bookkeeping annotations.
- apiGroups: [retrainer.dev]
  resources: [modellines]
  verbs: [get, list, watch, create, patch]
# Keep the version sequence and the line's state in its status (replaced under optimistic
# concurrency, so a version number is never handed out twice).
- apiGroups: [retrainer.dev]
  resources: [modellines/status]
  verbs: [get, patch, update]
# Record phase, conditions, progress, locations and verification in the status.
- apiGroups: [retrainer.dev]
  resources: [retrainjobs/status]
  verbs: [get, patch, update]
# Launch the training Job of each version and follow it; start a model line's scrub and
# retention Jobs and delete each once its result is recorded.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create, delete]
# Read training pods' state and termination messages (the trainer's manifest summary).
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Post Kubernetes Events about RetrainJobs (both Event APIs), and watch the Job controller's
# FailedCreate Events: why a training Job's pods cannot be created (admission, quota) shows
# only there.
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch, list, watch]
# Check that a RetrainJob's models claim exists before launching its Job.
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get]
# Check the S3 credentials Secret exists; no other Secret is readable.
- apiGroups: [""]
  resources: [secrets]
  resourceNames: [{{ .Values.s3.secretName | quote }}]
  verbs: [get]
{{- end }}
