{{/* Names, labels, images, security contexts and the addresses every component shares. */}}

{{- define "freshcart.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* freshcart.name: "<fullname>-<component>"; call with (list $ "component"). */}}
{{- define "freshcart.name" -}}
{{- printf "%s-%s" (include "freshcart.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{- define "freshcart.selectorLabels" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "freshcart.labels" -}}
{{ include "freshcart.selectorLabels" . }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* freshcart.image: "repository:tag" of images.<key>; call with (list $ "key"). */}}
{{- define "freshcart.image" -}}
{{- $root := index . 0 -}}
{{- $image := index $root.Values.images (index . 1) -}}
{{- $repository := $image.repository -}}
{{- $tag := $image.tag -}}
{{- if eq (index . 1) "airflow" -}}
{{- $repository = default $root.Values.images.freshcart.repository $repository -}}
{{- $tag = default $root.Values.images.freshcart.tag $tag -}}
{{- end -}}
{{- printf "%s:%s" $repository (default $root.Chart.AppVersion $tag) -}}
{{- end -}}

{{- define "freshcart.podSecurityContext" -}}
{{- $component := index . 1 -}}
{{- toYaml (($component.securityContexts | default dict).pod | default (index . 0).Values.securityContexts.pod) -}}
{{- end -}}

{{- define "freshcart.containerSecurityContext" -}}
{{- $component := index . 1 -}}
{{- toYaml (($component.securityContexts | default dict).containers | default (index . 0).Values.securityContexts.containers) -}}
{{- end -}}

{{/* Scheduling of a component: nodeSelector, tolerations, affinity; call with the component's values. */}}
{{- define "freshcart.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Secret names, generated or existing. */}}
{{- define "freshcart.postgresql.secret" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.postgresql.auth.existingSecret) -}}
{{- fail "postgresql.auth.existingSecret is required when postgresql.enabled is false: create a Secret with the password of your PostgreSQL under postgresql.auth.existingSecretPasswordKey and name it there" -}}
{{- end -}}
{{- .Values.postgresql.auth.existingSecret | default (include "freshcart.name" (list . "postgresql")) -}}
{{- end -}}
{{- define "freshcart.redis.secret" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.auth.existingSecret) -}}
{{- fail "redis.auth.existingSecret is required when redis.enabled is false: create a Secret with the password of your Redis under redis.auth.existingSecretPasswordKey and name it there" -}}
{{- end -}}
{{- .Values.redis.auth.existingSecret | default (include "freshcart.name" (list . "redis")) -}}
{{- end -}}
{{- define "freshcart.scoring.secret" -}}
{{- .Values.scoring.auth.existingSecret | default (include "freshcart.name" (list . "scoring")) -}}
{{- end -}}
{{- define "freshcart.kafka.secret" -}}
{{- if and (not .Values.kafka.enabled) (not .Values.kafka.auth.existingSecret) -}}
{{- fail "kafka.auth.existingSecret is required when kafka.enabled is false and kafka.auth.enabled is true: create a Secret with the SCRAM-SHA-512 passwords of your Kafka's FreshCart principals under the keys producer-password, stream-password, serving-password, monitoring-password (and admin-password where the chart creates topics or ACLs) and name it there, or set kafka.auth.enabled=false for a Kafka without SASL" -}}
{{- end -}}
{{- .Values.kafka.auth.existingSecret | default (include "freshcart.name" (list . "kafka")) -}}
{{- end -}}
{{- define "freshcart.airflow.secret" -}}
{{- include "freshcart.name" (list . "airflow") -}}
{{- end -}}

{{/* Addresses: in-cluster services or the external ones. */}}
{{- define "freshcart.kafka.bootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s:9092" (include "freshcart.name" (list . "kafka")) -}}
{{- else -}}
{{- required "kafka.external.bootstrapServers is required when kafka.enabled is false: set it to host:port[,host:port] of your Kafka" .Values.kafka.external.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "freshcart.redis.host" -}}
{{- if .Values.redis.enabled -}}
{{- include "freshcart.name" (list . "redis") -}}
{{- else -}}
{{- required "redis.external.host is required when redis.enabled is false: set it to your Redis host" .Values.redis.external.host -}}
{{- end -}}
{{- end -}}
{{- define "freshcart.redis.port" -}}
{{- if .Values.redis.enabled }}6379{{ else }}{{ .Values.redis.external.port }}{{ end -}}
{{- end -}}

{{- define "freshcart.postgresql.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "freshcart.name" (list . "postgresql") -}}
{{- else -}}
{{- required "postgresql.external.host is required when postgresql.enabled is false: set it to your PostgreSQL host" .Values.postgresql.external.host -}}
{{- end -}}
{{- end -}}
{{- define "freshcart.postgresql.port" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.postgresql.external.port }}{{ end -}}
{{- end -}}

{{/* freshcart.postgresql.url: URL of one database, the password taken from $(POSTGRES_PASSWORD); call with (list $ "database" "scheme"). */}}
{{- define "freshcart.postgresql.url" -}}
{{- $root := index . 0 -}}
{{- printf "%s://%s:$(POSTGRES_PASSWORD)@%s:%s/%s" (index . 2) $root.Values.postgresql.auth.username (include "freshcart.postgresql.host" $root) (include "freshcart.postgresql.port" $root) (index . 1) -}}
{{- end -}}

{{- define "freshcart.mlflow.uri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s:%d" (include "freshcart.name" (list . "mlflow")) (int .Values.mlflow.port) -}}
{{- else -}}
{{- .Values.mlflow.external.trackingUri -}}
{{- end -}}
{{- end -}}

{{/* A generated secret value: the one already in the cluster, else a new random one. */}}
{{- define "freshcart.secretValue" -}}
{{- $root := index . 0 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) -}}
{{- if and $existing (hasKey ($existing.data | default dict) (index . 2)) -}}
{{- index $existing.data (index . 2) -}}
{{- else -}}
{{- randAlphaNum (int (index . 3)) | b64enc -}}
{{- end -}}
{{- end -}}

{{/* The replica check of the stream processor: a consumer beyond the partitions sits idle. */}}
{{- define "freshcart.streamProcessor.check" -}}
{{- $partitions := int .Values.kafka.topics.events.partitions -}}
{{- if gt (int .Values.streamProcessor.replicas) $partitions -}}
{{- fail (printf "streamProcessor.replicas is %d but kafka.topics.events.partitions is %d: set streamProcessor.replicas to at most %d (a consumer beyond the partitions gets none), or raise the partitions" (int .Values.streamProcessor.replicas) $partitions $partitions) -}}
{{- end -}}
{{- if gt (int .Values.streamProcessor.keda.maxReplicaCount) $partitions -}}
{{- fail (printf "streamProcessor.keda.maxReplicaCount is %d but kafka.topics.events.partitions is %d: set it to at most %d" (int .Values.streamProcessor.keda.maxReplicaCount) $partitions $partitions) -}}
{{- end -}}
{{- end -}}

{{/* Environment of the FreshCart containers: non-secret settings from the ConfigMap, credentials from Secrets (URLs are composed by Kubernetes from $(VAR) references, so no password is in a ConfigMap). */}}
{{- define "freshcart.env" -}}
- name: POSTGRES_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "freshcart.postgresql.secret" . }}
      key: {{ .Values.postgresql.auth.existingSecretPasswordKey }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "freshcart.redis.secret" . }}
      key: {{ .Values.redis.auth.existingSecretPasswordKey }}
- name: FRESHCART_POSTGRES_PASSWORD
  value: $(POSTGRES_PASSWORD)
- name: FRESHCART_POSTGRES_URL
  value: {{ include "freshcart.postgresql.url" (list . .Values.postgresql.databases.feast "postgresql") | quote }}
- name: FRESHCART_FEAST_REGISTRY_URL
  value: {{ include "freshcart.postgresql.url" (list . .Values.postgresql.databases.feast "postgresql+psycopg") | quote }}
- name: FRESHCART_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:%s/0" (include "freshcart.redis.host" .) (include "freshcart.redis.port" .) | quote }}
- name: FRESHCART_FEAST_REDIS
  value: {{ printf "%s:%s,db=0,password=$(REDIS_PASSWORD)" (include "freshcart.redis.host" .) (include "freshcart.redis.port" .) | quote }}
{{- end -}}

{{/* The Kafka principals: one per FreshCart role (freshcart/credentials.py KAFKA_ROLES), the admin the broker's only super user. */}}
{{- define "freshcart.kafka.roles" -}}
{{- toJson (list "admin" "producer" "stream" "serving" "monitoring") -}}
{{- end -}}
{{- define "freshcart.kafka.principal" -}}
{{- printf "freshcart-%s" . -}}
{{- end -}}

{{/* freshcart.kafka.env: the SCRAM passwords of the Kafka roles named, as the settings read them
(FRESHCART_KAFKA_<ROLE>_PASSWORD), each from its key <role>-password of the Kafka Secret; nothing
with kafka.auth.enabled false. Call with (list $ "stream") or (list $ "admin" "producer" ...). */}}
{{- define "freshcart.kafka.env" -}}
{{- $root := index . 0 -}}
{{- $env := list -}}
{{- if $root.Values.kafka.auth.enabled -}}
{{- range $role := rest . -}}
{{- $ref := dict "name" (include "freshcart.kafka.secret" $root) "key" (printf "%s-password" $role) -}}
{{- $env = append $env (dict "name" (printf "FRESHCART_KAFKA_%s_PASSWORD" (upper $role)) "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- end -}}
{{- with $env }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* freshcart.kafka.adminConfig: a shell line that writes the admin principal's client configuration for the
Kafka tools (`--command-config /tmp/admin.properties`), the password from $FRESHCART_KAFKA_ADMIN_PASSWORD;
a PLAINTEXT one with kafka.auth.enabled false. */}}
{{- define "freshcart.kafka.adminConfig" -}}
{{- if .Values.kafka.auth.enabled -}}
(umask 077; printf '%s\n' 'security.protocol=SASL_PLAINTEXT' 'sasl.mechanism=SCRAM-SHA-512' "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{{ include "freshcart.kafka.principal" "admin" }}\" password=\"${FRESHCART_KAFKA_ADMIN_PASSWORD}\";" > /tmp/admin.properties)
{{- else -}}
printf '%s\n' 'security.protocol=PLAINTEXT' > /tmp/admin.properties
{{- end -}}
{{- end -}}

{{- define "freshcart.envFrom" -}}
- configMapRef:
    name: {{ include "freshcart.name" (list . "settings") }}
{{- end -}}

{{/* Volumes every FreshCart container mounts: the shared data dir and a writable /tmp. */}}
{{- define "freshcart.dataVolumes" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ .Values.freshcart.data.existingClaim | default (include "freshcart.name" (list . "data")) }}
- name: tmp
  emptyDir: {}
{{- end -}}
{{- define "freshcart.dataMounts" -}}
- name: data
  mountPath: /data
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* A PersistentVolumeClaim; call with (list $ "name" persistenceValues accessModes). */}}
{{- define "freshcart.pvc" -}}
{{- $root := index . 0 -}}
{{- $p := index . 2 -}}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "freshcart.name" (list $root (index . 1)) }}
  labels:
    {{- include "freshcart.labels" (list $root (index . 1)) | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
spec:
  accessModes:
    {{- toYaml (index . 3) | nindent 4 }}
  {{- with $p.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ $p.size }}
{{- end -}}

{{/* An Airflow Fernet key (url-safe base64 of 32 bytes), the one in the cluster if there is one. */}}
{{- define "freshcart.fernetKey" -}}
{{- $existing := lookup "v1" "Secret" (index . 0).Release.Namespace (index . 1) -}}
{{- if and $existing (hasKey ($existing.data | default dict) "fernet-key") -}}
{{- index $existing.data "fernet-key" -}}
{{- else -}}
{{- randAlphaNum 32 | b64enc | replace "+" "-" | replace "/" "_" | b64enc -}}
{{- end -}}
{{- end -}}

{{/* freshcart.spread: the component's affinity, or by default a preference for one pod per node; call with (list $ "component" affinityValues). */}}
{{- define "freshcart.spread" -}}
{{- if index . 2 -}}
{{- toYaml (index . 2) -}}
{{- else -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "freshcart.selectorLabels" (list (index . 0) (index . 1)) | nindent 12 }}
{{- end -}}
{{- end -}}

{{/* freshcart.pdb: a PodDisruptionBudget letting one pod of the component go at a time; call with (list $ "component"). */}}
{{- define "freshcart.pdb" -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "freshcart.name" . }}
  labels:
    {{- include "freshcart.labels" . | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "freshcart.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* The topics of the settings (freshcart.kafka_io.topic_specs) as JSON: name, partitions, configs; the stream processor's compacted state changelogs included. */}}
{{- define "freshcart.kafka.topics" -}}
{{- $t := .Values.kafka.topics -}}
{{- $group := .Values.freshcart.settings.stream_group | default "freshcart-stream" -}}
{{- $compact := "cleanup.policy=compact,segment.bytes=67108864" -}}
{{- $topics := list $t.events $t.dlq (dict "name" $t.byProduct.name "partitions" $t.events.partitions) $t.predictions -}}
{{- $topics = append $topics (dict "name" (printf "%s-%s-changelog" $group $t.events.name) "partitions" $t.events.partitions "configs" $compact) -}}
{{- $topics = append $topics (dict "name" (printf "%s-%s-changelog" $group $t.byProduct.name) "partitions" $t.events.partitions "configs" $compact) -}}
{{- toJson $topics -}}
{{- end -}}
