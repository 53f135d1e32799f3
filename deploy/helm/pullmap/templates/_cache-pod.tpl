{{/* The cache's pod template, shared by the DaemonSet and the PVC and S3 Deployments (as deploy/cache and
deploy/cache-pvc): the same container, probes and security; the store is a hostPath, the claim, or (S3)
a bounded emptyDir that holds only the downloads in flight. */}}
{{- define "pullmap.cachePod" -}}
{{- $daemonset := eq .Values.cache.mode "daemonset" -}}
{{- $s3 := eq .Values.cache.mode "s3" -}}
{{- $hostNetwork := and $daemonset .Values.cache.daemonset.hostNetwork -}}
metadata:
  labels:
    {{- include "pullmap.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: cache
    pullmap.dev/ignore: "true"
    {{- with .Values.cache.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Restarts the pods when the config changes.
    checksum/config: {{ include (print .Template.BasePath "/cache-config.yaml") . | sha256sum }}
    {{- with .Values.cache.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  {{- $priority := .Values.cache.priorityClassName -}}
  {{- if kindIs "invalid" $priority }}{{ $priority = ternary "system-node-critical" "" $daemonset }}{{ end }}
  {{- with $priority }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.cache.terminationGracePeriodSeconds }}
  {{- if or .Values.cache.serviceAccount.create .Values.cache.serviceAccount.name }}
  serviceAccountName: {{ include "pullmap.cacheServiceAccount" . }}
  {{- end }}
  automountServiceAccountToken: false
  {{- if $hostNetwork }}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if kindIs "invalid" .Values.cache.tolerations }}
  {{- if $daemonset }}
  tolerations:
    - operator: Exists
  {{- end }}
  {{- else if .Values.cache.tolerations }}
  tolerations:
    {{- toYaml .Values.cache.tolerations | nindent 4 }}
  {{- end }}
  {{- with .Values.cache.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.cache.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.cache.podSecurityContext | nindent 4 }}
  {{- if $daemonset }}
  initContainers:
    # hostPath directories are created root-owned; hand the store to the cache's user once.
    - name: store-owner
      image: {{ include "pullmap.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      command: ["/nodejs/bin/node", "-e", "require('fs').chownSync('/var/lib/pullmap/cache', {{ .Values.cache.podSecurityContext.runAsUser | default 65532 }}, {{ .Values.cache.podSecurityContext.runAsGroup | default 65532 }})"]
      securityContext:
        runAsNonRoot: false
        runAsUser: 0
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: { drop: ["ALL"], add: ["CHOWN"] }
      volumeMounts:
        - { name: store, mountPath: /var/lib/pullmap/cache }
  {{- end }}
  containers:
    - name: cache
      image: {{ include "pullmap.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- with include "pullmap.cacheCommand" . }}
      {{ . }}
      {{- end }}
      args:
        - cache
        - --config=/etc/pullmap/cache/cache.yaml
        - --listen={{ ternary "127.0.0.1" "0.0.0.0" $hostNetwork }}:{{ .Values.cache.port }}
      ports:
        {{- if $hostNetwork }}
        - { name: registry, containerPort: {{ .Values.cache.port }}, protocol: TCP }
        {{- else if $daemonset }}
        - { name: registry, containerPort: {{ .Values.cache.port }}, hostPort: {{ .Values.cache.port }}, hostIP: {{ .Values.cache.daemonset.hostIP }}, protocol: TCP }
        {{- else }}
        - { name: registry, containerPort: {{ .Values.cache.port }}, protocol: TCP }
        {{- end }}
      {{- $env := concat (include "pullmap.proxyEnv" . | fromYamlArray) (.Values.cache.extraEnv | default list) }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.cache.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      readinessProbe:
        httpGet: { path: /readyz, port: registry{{ if $hostNetwork }}, host: 127.0.0.1{{ end }} }
        periodSeconds: 5
      livenessProbe:
        httpGet: { path: /healthz, port: registry{{ if $hostNetwork }}, host: 127.0.0.1{{ end }} }
        periodSeconds: 10
        failureThreshold: 3
      resources:
        {{- toYaml .Values.cache.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.cache.securityContext | nindent 8 }}
      volumeMounts:
        - { name: config, mountPath: /etc/pullmap/cache, readOnly: true }
        - { name: store, mountPath: /var/lib/pullmap/cache }
        {{- range .Values.cache.secretMounts }}
        - { name: secret-{{ .name }}, mountPath: /etc/pullmap/secrets/{{ .name }}, readOnly: true }
        {{- end }}
  volumes:
    - name: config
      {{- if .Values.cache.existingConfigSecret }}
      secret:
        secretName: {{ .Values.cache.existingConfigSecret }}
        items: [{ key: cache.yaml, path: cache.yaml }]
      {{- else }}
      configMap: { name: {{ include "pullmap.cacheName" . }}-config }
      {{- end }}
    - name: store
      {{- if $daemonset }}
      hostPath: { path: {{ .Values.cache.daemonset.hostPath }}, type: DirectoryOrCreate }
      {{- else if $s3 }}
      emptyDir: { sizeLimit: {{ .Values.cache.s3.spoolSizeLimit }} }
      {{- else }}
      persistentVolumeClaim: { claimName: {{ .Values.cache.persistence.existingClaim | default (printf "%s-store" (include "pullmap.cacheName" .)) }} }
      {{- end }}
    {{- range .Values.cache.secretMounts }}
    - name: secret-{{ .name }}
      secret: { secretName: {{ .secretName }} }
    {{- end }}
{{- end -}}
