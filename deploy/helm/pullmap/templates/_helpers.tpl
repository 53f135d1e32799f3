{{/* Name of the chart's objects: the release name, or fullnameOverride; kept within 63 characters. */}}
{{- define "pullmap.fullname" -}}
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

{{- define "pullmap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; selector labels are the stable subset (plus a component). */}}
{{- define "pullmap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "pullmap.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pullmap
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "pullmap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pullmap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "pullmap.webhookName" -}}{{ include "pullmap.fullname" . }}-webhook{{- end -}}
{{- define "pullmap.cacheName" -}}{{ include "pullmap.fullname" . }}-cache{{- end -}}
{{- define "pullmap.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-webhook-tls" (include "pullmap.fullname" .)) -}}
{{- end -}}
{{- define "pullmap.cacheServiceAccount" -}}
{{- .Values.cache.serviceAccount.name | default (include "pullmap.cacheName" .) -}}
{{- end -}}
{{- /* HTTPS_PROXY / HTTP_PROXY / NO_PROXY from proxy.*, for the webhook's and the cache's containers (a YAML
list, empty when no proxy is set). */ -}}
{{- define "pullmap.proxyEnv" -}}
{{- $env := list -}}
{{- with .Values.proxy.httpsProxy }}{{ $env = append $env (dict "name" "HTTPS_PROXY" "value" .) }}{{ end -}}
{{- with .Values.proxy.httpProxy }}{{ $env = append $env (dict "name" "HTTP_PROXY" "value" .) }}{{ end -}}
{{- with .Values.proxy.noProxy }}{{ $env = append $env (dict "name" "NO_PROXY" "value" .) }}{{ end -}}
{{- toYaml $env -}}
{{- end -}}
{{- define "pullmap.cacheNamespace" -}}{{ .Values.cache.namespace | default .Release.Namespace }}{{- end -}}

{{/* The image reference: repository:tag, with @digest when one is given. */}}
{{- define "pullmap.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the webhook never touches: the configured ones, the release's and the cache's. */}}
{{- define "pullmap.excludedNamespaces" -}}
{{- $list := concat (list .Release.Namespace) .Values.webhook.excludeNamespaces -}}
{{- if .Values.cache.enabled -}}{{- $list = append $list (include "pullmap.cacheNamespace" .) -}}{{- end -}}
{{- $list | uniq | join "," -}}
{{- end -}}

{{/* DNS names of the webhook Service, for its serving certificate. */}}
{{- define "pullmap.webhookDnsNames" -}}
{{- $svc := include "pullmap.webhookName" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson -}}
{{- end -}}

{{/* Whether ServiceMonitors are rendered: forced, or auto and the Prometheus Operator's CRD is served. */}}
{{- define "pullmap.serviceMonitor" -}}
{{- $mode := toString .Values.serviceMonitor.enabled -}}
{{- if or (eq $mode "true") (and (eq $mode "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) -}}
true
{{- end -}}
{{- end -}}

{{/* Checks that values fit together; each message names the value and the fix. */}}
{{- define "pullmap.validate" -}}
{{- $deadline := toString .Values.webhook.deadline -}}
{{- $deadlineMs := -1 -}}
{{- if regexMatch "^[0-9]+ms$" $deadline -}}{{- $deadlineMs = trimSuffix "ms" $deadline | int -}}
{{- else if regexMatch "^[0-9]+s$" $deadline -}}{{- $deadlineMs = mul (trimSuffix "s" $deadline | int) 1000 -}}
{{- end -}}
{{- if ge (int $deadlineMs) (mul (int .Values.webhook.timeoutSeconds) 1000) -}}
{{- fail (printf "webhook.deadline (%s) must be below webhook.timeoutSeconds (%v s), or the apiserver gives up before pullmap answers; lower the deadline or raise timeoutSeconds" $deadline .Values.webhook.timeoutSeconds) -}}
{{- end -}}
{{- if and .Values.certManager.enabled .Values.tls.existingSecret -}}
{{- fail "certManager.enabled and tls.existingSecret contradict each other: the certificate comes from one place; unset one" -}}
{{- end -}}
{{- if and .Values.tls.existingSecret (not .Values.tls.caBundle) (not (hasKey (.Values.webhook.annotations | default dict) "cert-manager.io/inject-ca-from")) -}}
{{- fail "tls.existingSecret needs tls.caBundle (the base64 PEM of the CA that signed it), or a CA injector annotation in webhook.annotations: without either the apiserver cannot trust the webhook" -}}
{{- end -}}
{{- if and (not .Values.webhook.leaderElection) (gt (int .Values.webhook.replicas) 1) -}}
{{- fail "webhook.leaderElection=false needs webhook.replicas=1: several replicas would all write map status" -}}
{{- end -}}
{{- if and .Values.cache.enabled .Values.cache.daemonset.hostNetwork (ne .Values.cache.mode "daemonset") -}}
{{- fail "cache.daemonset.hostNetwork only applies to cache.mode=daemonset" -}}
{{- end -}}
{{- if and .Values.webhook.url (not .Values.certManager.enabled) (not .Values.tls.existingSecret) -}}
{{- $host := regexReplaceAll ":[0-9]+$" (.Values.webhook.url | trimPrefix "https://") "" | trimAll "[]" -}}
{{- if not (has $host (concat .Values.tls.ipAddresses (include "pullmap.webhookDnsNames" . | fromJsonArray))) -}}
{{- fail (printf "webhook.url names %s, which the self-signed certificate does not: add it to tls.ipAddresses (for an IP), or use a Service name" $host) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.webhook.hostNetwork (eq .Values.webhook.listenHost "127.0.0.1") (not .Values.webhook.url) -}}
{{- fail "webhook.listenHost=127.0.0.1 with hostNetwork is reachable from the node only, not through the Service: set webhook.url (e.g. https://127.0.0.1:PORT) for an apiserver on the same machine" -}}
{{- end -}}
{{- $pdb := .Values.webhook.pdb -}}
{{- if and $pdb.enabled (kindIs "invalid" $pdb.maxUnavailable) (gt (int .Values.webhook.replicas) 1) (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.webhook.replicas)) -}}
{{- fail (printf "webhook.pdb.minAvailable (%v) must be below webhook.replicas (%v), or no node running a webhook pod can be drained; lower it or use webhook.pdb.maxUnavailable" $pdb.minAvailable .Values.webhook.replicas) -}}
{{- end -}}
{{- /* On a cluster (lookup answers; helm template has none) that does not serve the map API yet, Helm would
fail to map the ClusterImageMaps before creating the CRDs that define them. */ -}}
{{- if and .Values.clusterImageMaps .Release.IsInstall (not (.Capabilities.APIVersions.Has "pullmap.dev/v1alpha1/ClusterImageMap")) (lookup "v1" "Namespace" "" "kube-system") -}}
{{- fail "clusterImageMaps: this cluster does not serve the ClusterImageMap API yet, and Helm cannot create objects of a CRD in the release that installs it. Install once without clusterImageMaps, then helm upgrade with them (README: Upgrading the chart); or apply the CRDs first (kubectl apply --server-side -k deploy/crds) and install with --take-ownership" -}}
{{- end -}}
{{- if and .Values.cache.existingConfigSecret (not .Values.cache.enabled) -}}
{{- fail "cache.existingConfigSecret is set but cache.enabled is false; set cache.enabled=true" -}}
{{- end -}}
{{- end -}}

{{/*
The cache container's command when cache.nodeFlags adds Node flags: the image's entrypoint (node, the
Dockerfile's flags, the bundle; test/deploy/helm.test.ts checks they match) with those flags inserted.
Empty when there are none, so the image's entrypoint runs as it is.
*/}}
{{- define "pullmap.cacheCommand" -}}
{{- with .Values.cache.nodeFlags -}}
command: {{ concat (list "/nodejs/bin/node" "--max-semi-space-size=2" "--heap-growing-percent=50" "--no-concurrent-recompilation" "--liftoff-only") . (list "/app/dist/pullmap.js") | toJson }}
{{- end -}}
{{- end }}
