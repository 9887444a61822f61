{{/* Chart name, truncated to 63 characters. */}}
{{- define "datapipe.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name (the Airflow values refer to `{{ .Release.Name }}-...`). */}}
{{- define "datapipe.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of one component's objects: <release>-<component>, truncated to 63 characters. */}}
{{- define "datapipe.componentName" -}}
{{- printf "%s-%s" (include "datapipe.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every object. */}}
{{- define "datapipe.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "datapipe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: datapipe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component (dict root, component). */}}
{{- define "datapipe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "datapipe.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Full labels of one component's objects (dict root, component). */}}
{{- define "datapipe.componentLabels" -}}
{{ include "datapipe.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Tag of every datapipe image: images.tag or the chart's appVersion; `latest` is refused. */}}
{{- define "datapipe.imageTag" -}}
{{- $tag := .Values.images.tag | default .Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "images.tag must not be `latest` (kind ignores loaded images tagged latest; pin a version or git SHA)" -}}
{{- end -}}
{{- $tag -}}
{{- end -}}

{{/* Full reference of one datapipe image (dict root, image: extract|transform|dashboard). */}}
{{- define "datapipe.image" -}}
{{- $repo := (index .root.Values.images .image).repository -}}
{{- $registry := .root.Values.images.registry | trimSuffix "/" -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry $repo (include "datapipe.imageTag" .root) -}}
{{- else -}}
{{- printf "%s:%s" $repo (include "datapipe.imageTag" .root) -}}
{{- end -}}
{{- end -}}

{{/* The PostgreSQL image of the warehouse, backup and test pods. */}}
{{- define "datapipe.postgresImage" -}}
{{- $img := .Values.warehouse.internal.image -}}
{{- if eq (toString $img.tag) "latest" -}}
{{- fail "warehouse.internal.image.tag must not be `latest`" -}}
{{- end -}}
{{- printf "%s:%s" $img.repository (toString $img.tag) -}}
{{- end -}}

{{/* True ("true") when the chart runs the warehouse itself. */}}
{{- define "datapipe.warehouseInternal" -}}
{{- if eq .Values.warehouse.mode "internal" -}}true{{- end -}}
{{- end -}}

{{/* Host name of the in-cluster warehouse Service. */}}
{{- define "datapipe.warehouseHost" -}}
{{- printf "%s.%s.svc" (include "datapipe.componentName" (dict "root" . "component" "warehouse")) .Release.Namespace -}}
{{- end -}}

{{/* True ("true") when the sandbox API is deployed: no API key and no existing API Secret. */}}
{{- define "datapipe.sandboxEnabled" -}}
{{- if and (not .Values.api.key) (not .Values.api.existingSecret) -}}true{{- end -}}
{{- end -}}

{{/* Base URL of the Alpha Vantage API the extract pods call (the sandbox when no key). */}}
{{- define "datapipe.apiBaseUrl" -}}
{{- if include "datapipe.sandboxEnabled" . -}}
{{- printf "http://%s.%s.svc:%d/query" (include "datapipe.componentName" (dict "root" . "component" "sandbox")) .Release.Namespace (int .Values.sandbox.port) -}}
{{- else -}}
{{- .Values.api.baseUrl -}}
{{- end -}}
{{- end -}}

{{/* Secret names, each defined once (generated Secret or the user's existingSecret). */}}
{{- define "datapipe.secret.admin" -}}
{{- .Values.warehouse.existingSecret.admin | default (include "datapipe.componentName" (dict "root" . "component" "warehouse-admin")) -}}
{{- end -}}
{{/* Secret with every libpq variable of the pipeline writer (DATAPIPE_WAREHOUSE_SECRET; task pods envFrom it). */}}
{{- define "datapipe.secret.pipelineEnv" -}}
{{- .Values.warehouse.existingSecret.pipeline | default (include "datapipe.componentName" (dict "root" . "component" "pipeline-env")) -}}
{{- end -}}
{{/* Secret with every libpq variable of the dashboard reader. */}}
{{- define "datapipe.secret.dashboardEnv" -}}
{{- .Values.warehouse.existingSecret.dashboard | default (include "datapipe.componentName" (dict "root" . "component" "dashboard-env")) -}}
{{- end -}}
{{/* Secret with every libpq variable of the backup role (the backup CronJob envFrom it; in-cluster warehouse only). */}}
{{- define "datapipe.secret.backupEnv" -}}
{{- .Values.backup.existingSecret | default (include "datapipe.componentName" (dict "root" . "component" "backup-env")) -}}
{{- end -}}
{{/* True ("true") when the chart backs up the warehouse server: backups on and the in-cluster warehouse. */}}
{{- define "datapipe.backupEnabled" -}}
{{- if and .Values.backup.enabled (include "datapipe.warehouseInternal" .) -}}true{{- end -}}
{{- end -}}
{{/* Secret with ALPHAVANTAGE_API_KEY and ALPHAVANTAGE_BASE_URL (DATAPIPE_API_SECRET). */}}
{{- define "datapipe.secret.api" -}}
{{- .Values.api.existingSecret | default (include "datapipe.componentName" (dict "root" . "component" "api")) -}}
{{- end -}}
{{/* Secret with the Airflow metadata connection (airflow.data.metadataSecretName). */}}
{{- define "datapipe.secret.airflowMetadata" -}}
{{- include "datapipe.componentName" (dict "root" . "component" "airflow-metadata") -}}
{{- end -}}
{{/* Secret with the Airflow admin password file. */}}
{{- define "datapipe.secret.airflowAdmin" -}}
{{- include "datapipe.componentName" (dict "root" . "component" "airflow-admin") -}}
{{- end -}}
{{/* Secret with the alert connections (AIRFLOW_CONN_*), read by Airflow as optional envFrom. */}}
{{- define "datapipe.secret.alerts" -}}
{{- include "datapipe.componentName" (dict "root" . "component" "alerts") -}}
{{- end -}}

{{/* A value kept across upgrades: the live Secret's key when it exists, else a new random string (dict root, name, key, length). */}}
{{- define "datapipe.keptRandom" -}}
{{- $live := include "datapipe.lookup" (list "v1" "Secret" .root.Release.Namespace .name) | fromYaml -}}
{{- $data := (get $live "data") | default dict -}}
{{- if hasKey $data .key -}}
{{- index $data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum (int (default 32 .length)) -}}
{{- end -}}
{{- end -}}

{{/* Pod security context of our pods: non-root, seccomp RuntimeDefault (dict root, uid?). */}}
{{- define "datapipe.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default .root.Values.podSecurityContext.runAsUser }}
runAsGroup: {{ .gid | default .root.Values.podSecurityContext.runAsGroup }}
fsGroup: {{ .gid | default .root.Values.podSecurityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: no privilege escalation, no capabilities, read-only root filesystem. */}}
{{- define "datapipe.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* imagePullSecrets of every pod. */}}
{{- define "datapipe.imagePullSecrets" -}}
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* libpq variables of one role as base64 Secret data (dict root, user, password); PGSSLROOTCERT when warehouse.sslRootCert is set. */}}
{{- define "datapipe.pgEnvData" -}}
PGHOST: {{ include "datapipe.warehouseHost" .root | b64enc | quote }}
PGPORT: {{ "5432" | b64enc | quote }}
PGDATABASE: {{ .root.Values.warehouse.database | b64enc | quote }}
PGUSER: {{ .user | b64enc | quote }}
PGPASSWORD: {{ .password | b64enc | quote }}
PGSSLMODE: {{ .root.Values.warehouse.sslMode | b64enc | quote }}
{{- with .root.Values.warehouse.sslRootCert }}
PGSSLROOTCERT: {{ . | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* Refuse contradictory values (included by the DAG ConfigMap, which always renders). */}}
{{- define "datapipe.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.warehouse.mode (list "internal" "external")) -}}
{{- fail "warehouse.mode must be internal or external" -}}
{{- end -}}
{{- if and (eq $v.warehouse.mode "external") $v.warehouse.existingSecret.admin -}}
{{- fail "warehouse.existingSecret.admin is only used with warehouse.mode=internal" -}}
{{- end -}}
{{- if and (eq $v.warehouse.mode "external") (or (not $v.warehouse.existingSecret.pipeline) (not $v.warehouse.existingSecret.dashboard)) -}}
{{- fail "warehouse.mode=external needs warehouse.existingSecret.pipeline and warehouse.existingSecret.dashboard: Secrets you manage with the keys PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE" -}}
{{- end -}}
{{- if and $v.api.key $v.api.existingSecret -}}
{{- fail "set either api.key or api.existingSecret, not both" -}}
{{- end -}}
{{- if and $v.alerts.smtp.enabled (not $v.alerts.smtp.host) -}}
{{- fail "alerts.smtp.enabled needs alerts.smtp.host" -}}
{{- end -}}
{{- if and $v.alerts.smtp.enabled (not $v.alerts.smtp.to) -}}
{{- fail "alerts.smtp.enabled needs alerts.smtp.to (comma-separated recipients)" -}}
{{- end -}}
{{- if and $v.alerts.slack.enabled (not (or $v.alerts.slack.webhookUrl $v.alerts.existingSecret)) -}}
{{- fail "alerts.slack.enabled needs alerts.slack.webhookUrl (or alerts.existingSecret)" -}}
{{- end -}}
{{- if $v.airflow.enabled -}}
{{- if ne $v.airflow.data.metadataSecretName (include "datapipe.secret.airflowMetadata" .) -}}
{{- if include "datapipe.warehouseInternal" . -}}
{{- fail (printf "airflow.data.metadataSecretName must be %q for release %q (the Secret this chart generates)" (include "datapipe.secret.airflowMetadata" .) .Release.Name) -}}
{{- end -}}
{{- end -}}
{{- include "datapipe.validateAirflow" . -}}
{{- end -}}
{{- end -}}

{{/* Refuse Airflow values that break the contract with our templates: one image build and registry, pull secrets, RBAC, kept secrets. */}}
{{- define "datapipe.validateAirflow" -}}
{{- $a := .Values.airflow -}}
{{- $tag := include "datapipe.imageTag" . -}}
{{- $registry := .Values.images.registry | trimSuffix "/" -}}
{{- range $key := list "defaultAirflowTag" "images.airflow.tag" "images.pod_template.tag" -}}
{{- $value := include "datapipe.airflowValue" (dict "values" $a "path" $key) -}}
{{- if and (or $value (eq $key "defaultAirflowTag")) (ne $value $tag) -}}
{{- fail (printf "airflow.%s (%v) must equal images.tag (%s): every image of a release comes from one build (pass tags with --set-string)" $key $value $tag) -}}
{{- end -}}
{{- end -}}
{{- if $registry -}}
{{- range $key := list "defaultAirflowRepository" "images.airflow.repository" "images.pod_template.repository" -}}
{{- $value := include "datapipe.airflowValue" (dict "values" $a "path" $key) -}}
{{- if and (or $value (eq $key "defaultAirflowRepository")) (not (hasPrefix (printf "%s/" $registry) $value)) -}}
{{- fail (printf "airflow.%s (%s) must start with images.registry (%s/): the Airflow components and the KubernetesExecutor workers pull from there" $key $value $registry) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $pullSecrets := list -}}
{{- range .Values.images.pullSecrets }}{{ $pullSecrets = append $pullSecrets .name }}{{ end -}}
{{- $registrySecret := include "datapipe.airflowValue" (dict "values" $a "path" "registry.secretName") -}}
{{- if and $pullSecrets (not (has $registrySecret $pullSecrets)) -}}
{{- fail (printf "airflow.registry.secretName must name one of images.pullSecrets (%s): the Airflow chart's pods and its worker pod template read only that value" (join ", " $pullSecrets)) -}}
{{- end -}}
{{- if and $registrySecret (not (has $registrySecret $pullSecrets)) -}}
{{- fail (printf "airflow.registry.secretName (%s) must also be in images.pullSecrets: the pipeline's own pods need it too" $registrySecret) -}}
{{- end -}}
{{- if eq (include "datapipe.airflowValue" (dict "values" $a "path" "allowPodLaunching")) "true" -}}
{{- fail "airflow.allowPodLaunching must stay false: its Role grants pods/exec; this chart binds its own pod-launching Role (pods, pods/log, events)" -}}
{{- end -}}
{{- range $key := list "jwtSecretName" "apiSecretKeySecretName" "scheduler.serviceAccount.name" -}}
{{- if not (include "datapipe.airflowValue" (dict "values" $a "path" $key)) -}}
{{- fail (printf "airflow.%s must be set (see values.yaml)" $key) -}}
{{- end -}}
{{- end -}}
{{- if and (contains "KubernetesExecutor" (toString $a.executor)) (not (include "datapipe.airflowValue" (dict "values" $a "path" "workers.serviceAccount.name"))) -}}
{{- fail "airflow.workers.serviceAccount.name must be set with KubernetesExecutor (the pod-launching RoleBinding names it)" -}}
{{- end -}}
{{- end -}}

{{/* One value of the parent's `airflow:` block by dotted path (dict values, path), as a string; empty when unset. */}}
{{- define "datapipe.airflowValue" -}}
{{- $node := .values -}}
{{- range $part := splitList "." .path -}}
{{- if kindIs "map" $node -}}{{- $node = get $node $part -}}{{- else -}}{{- $node = "" -}}{{- end -}}
{{- end -}}
{{- if not (kindIs "invalid" $node) -}}{{- toString $node -}}{{- end -}}
{{- end -}}

{{/* Service accounts that launch pods (YAML list): the scheduler, and the workers with KubernetesExecutor. */}}
{{- define "datapipe.podLauncherAccounts" -}}
{{- $accounts := list (include "datapipe.airflowValue" (dict "values" .Values.airflow "path" "scheduler.serviceAccount.name")) -}}
{{- if contains "KubernetesExecutor" (toString .Values.airflow.executor) -}}
{{- $accounts = append $accounts (include "datapipe.airflowValue" (dict "values" .Values.airflow "path" "workers.serviceAccount.name")) -}}
{{- end -}}
{{- toYaml $accounts -}}
{{- end -}}

{{/* Environment of the role/database init script (StatefulSet first start and the init Job). */}}
{{- define "datapipe.warehouseInitEnv" -}}
- name: WAREHOUSE_DB
  value: {{ .Values.warehouse.database | quote }}
- name: PIPELINE_USER
  value: {{ .Values.warehouse.pipelineUser | quote }}
- name: PIPELINE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "datapipe.secret.pipelineEnv" . }}
      key: PGPASSWORD
- name: DASHBOARD_USER
  value: {{ .Values.warehouse.dashboardUser | quote }}
- name: DASHBOARD_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "datapipe.secret.dashboardEnv" . }}
      key: PGPASSWORD
{{- if .Values.airflow.enabled }}
- name: AIRFLOW_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "datapipe.secret.airflowMetadata" . }}
      key: password
{{- end }}
{{- end -}}

{{/* NetworkPolicy egress rule to the warehouse (the StatefulSet, or the external server's CIDRs). */}}
{{- define "datapipe.warehouseEgress" -}}
- ports:
    - port: {{ if include "datapipe.warehouseInternal" . }}5432{{ else }}{{ .Values.warehouse.external.port }}{{ end }}
      protocol: TCP
  to:
  {{- if include "datapipe.warehouseInternal" . }}
    - podSelector:
        matchLabels:
          {{- include "datapipe.selectorLabels" (dict "root" . "component" "warehouse") | nindent 10 }}
  {{- else }}
  {{- range .Values.warehouse.external.cidrs }}
    - ipBlock:
        cidr: {{ . }}
  {{- end }}
  {{- end }}
{{- end -}}

{{/* Pod selector of the pipeline's task pods (KubernetesPodOperator labels every pod it starts). */}}
{{- define "datapipe.taskPodLabels" -}}
kubernetes_pod_operator: "True"
{{- end -}}

{{/* Pod selector of the Airflow chart's pods of this release. */}}
{{- define "datapipe.airflowPodLabels" -}}
tier: airflow
release: {{ .Release.Name }}
{{- end -}}
