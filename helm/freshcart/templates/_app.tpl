{{/* freshcart.app: Deployment + Service of a one-container HTTP component of the FreshCart image.
Call with (dict "root" $ "component" "mlflow" "values" .Values.mlflow "args" list "env" yaml
"health" "/health" "volumes" yaml "mounts" yaml "stateless" bool); a stateless one rolls and scales. */}}
{{- define "freshcart.app" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := include "freshcart.name" (list $root .component) -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  labels:
    {{- include "freshcart.labels" (list $root .component) | nindent 4 }}
spec:
  {{- if .stateless }}
  replicas: {{ $v.replicas }}
  {{- else }}
  # one pod owns the ReadWriteOnce volume: replaced, not rolled
  replicas: 1
  strategy:
    type: Recreate
  {{- end }}
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
      containers:
        - name: {{ .component }}
          image: {{ include "freshcart.image" (list $root "freshcart") }}
          imagePullPolicy: {{ $root.Values.images.freshcart.pullPolicy }}
          args: {{ toJson .args }}
          env:
            {{- include "freshcart.env" $root | nindent 12 }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
          envFrom:
            {{- include "freshcart.envFrom" $root | nindent 12 }}
          ports:
            - {name: http, containerPort: {{ $v.port }}}
          readinessProbe:
            httpGet: {path: {{ .health }}, port: http}
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 5
          # the process answers on its port; readiness checks its health route (and so its backends)
          livenessProbe:
            tcpSocket: {port: http}
            initialDelaySeconds: 60
            periodSeconds: 30
            timeoutSeconds: 10
            failureThreshold: 5
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "freshcart.containerSecurityContext" (list $root $v) | nindent 12 }}
          volumeMounts:
            {{- include "freshcart.dataMounts" $root | nindent 12 }}
            {{- with .mounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "freshcart.dataVolumes" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "freshcart.labels" (list $root .component) | nindent 4 }}
spec:
  selector:
    {{- include "freshcart.selectorLabels" (list $root .component) | nindent 4 }}
  ports:
    - {name: http, port: {{ $v.port }}, targetPort: http}
{{- if and .stateless (gt (int $v.replicas) 1) }}
---
{{ include "freshcart.pdb" (list $root .component) }}
{{- end }}
{{- end -}}
