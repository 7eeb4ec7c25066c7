{{/* Airflow: the environment, the wait-for-migrations init container and one Deployment per component. */}}

{{- define "freshcart.airflow.env" -}}
{{ include "freshcart.env" . }}
{{- /* the DAGs' Kafka work (landing the prediction log, lag, dead letters) is the monitoring role's */}}
{{- with include "freshcart.kafka.env" (list . "monitoring") }}{{ . | nindent 0 }}{{ end }}
- {name: AIRFLOW_HOME, value: /data/airflow}
- {name: AIRFLOW__CORE__DAGS_FOLDER, value: /opt/freshcart/dags}
- {name: AIRFLOW__CORE__PLUGINS_FOLDER, value: /opt/freshcart/plugins}
- {name: AIRFLOW__CORE__LOAD_EXAMPLES, value: "False"}
- {name: AIRFLOW__CORE__EXECUTOR, value: {{ .Values.airflow.executor | quote }}}
- {name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL, value: {{ printf "http://%s:%d/execution/" (include "freshcart.name" (list . "api-server")) (int .Values.apiServer.port) | quote }}}
- {name: AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK, value: "True"}
- {name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN, value: {{ include "freshcart.postgresql.url" (list . .Values.postgresql.databases.airflow "postgresql+psycopg") | quote }}}
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef: {name: {{ .Values.jwtSecretName | default (include "freshcart.airflow.secret" .) }}, key: jwt-secret}
- name: AIRFLOW__API__SECRET_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.apiSecretKeySecretName | default (include "freshcart.airflow.secret" .) }}, key: api-secret-key}
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef: {name: {{ .Values.fernetKeySecretName | default (include "freshcart.airflow.secret" .) }}, key: fernet-key}
{{- range $key, $value := .Values.airflow.config }}
- {name: {{ printf "AIRFLOW__%s" (upper $key) }}, value: {{ $value | toString | quote }}}
{{- end }}
{{- end -}}

{{- define "freshcart.airflow.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ include "freshcart.image" (list . "airflow") }}
  imagePullPolicy: {{ .Values.images.airflow.pullPolicy }}
  args: ["airflow", "db", "check-migrations", "--migration-wait-timeout=600"]
  env:
    {{- include "freshcart.airflow.env" . | nindent 4 }}
  envFrom:
    {{- include "freshcart.envFrom" . | nindent 4 }}
  resources:
    {{- toYaml .Values.migrateDatabaseJob.resources | nindent 4 }}
  securityContext:
    {{- include "freshcart.containerSecurityContext" (list . dict) | nindent 4 }}
  volumeMounts:
    {{- include "freshcart.dataMounts" . | nindent 4 }}
{{- end -}}

{{/* freshcart.airflow.deployment: (dict "root" $ "component" "api-server" "values" .Values.apiServer "args" list "ports" list "probes" yaml). */}}
{{- define "freshcart.airflow.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "freshcart.name" (list $root .component) }}
  labels:
    {{- include "freshcart.labels" (list $root .component) | nindent 4 }}
spec:
  replicas: {{ $v.replicas }}
  selector:
    matchLabels:
      {{- include "freshcart.selectorLabels" (list $root .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "freshcart.labels" (list $root .component) | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "freshcart.podSecurityContext" (list $root $v) | nindent 8 }}
      {{- include "freshcart.scheduling" (dict "nodeSelector" $v.nodeSelector "tolerations" $v.tolerations "affinity" (include "freshcart.spread" (list $root .component $v.affinity) | fromYaml)) | nindent 6 }}
      initContainers:
        {{- include "freshcart.airflow.waitForMigrations" $root | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "freshcart.image" (list $root "airflow") }}
          imagePullPolicy: {{ $root.Values.images.airflow.pullPolicy }}
          args: {{ toJson .args }}
          env:
            {{- include "freshcart.airflow.env" $root | nindent 12 }}
          envFrom:
            {{- include "freshcart.envFrom" $root | nindent 12 }}
          {{- with .ports }}
          ports:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- .probes | nindent 10 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "freshcart.containerSecurityContext" (list $root $v) | nindent 12 }}
          volumeMounts:
            {{- include "freshcart.dataMounts" $root | nindent 12 }}
      volumes:
        {{- include "freshcart.dataVolumes" $root | nindent 8 }}
{{- end -}}

{{/* Probes of the components without an HTTP port: `airflow jobs check` of the local job. */}}
{{- define "freshcart.airflow.jobProbes" -}}
readinessProbe:
  exec:
    command: ["airflow", "jobs", "check", "--job-type", {{ . | quote }}, "--local"]
  initialDelaySeconds: 30
  periodSeconds: 30
  timeoutSeconds: 30
livenessProbe:
  exec:
    command: ["airflow", "jobs", "check", "--job-type", {{ . | quote }}, "--local", "--allow-multiple", "--limit", "1"]
  initialDelaySeconds: 60
  periodSeconds: 60
  timeoutSeconds: 30
  failureThreshold: 5
{{- end -}}
