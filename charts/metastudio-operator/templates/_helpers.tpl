{{/*
Chart name, truncated to 63 characters (a label value's limit).
*/}}
{{- define "metastudio-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects: the release name, plus the chart name
unless the release name already contains it; truncated to 63 characters.
*/}}
{{- define "metastudio-operator.fullname" -}}
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
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "metastudio-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "metastudio-operator.labels" -}}
helm.sh/chart: {{ include "metastudio-operator.chart" . }}
{{ include "metastudio-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: metastudio-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the operator's pods (stable across upgrades).
*/}}
{{- define "metastudio-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metastudio-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "metastudio-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "metastudio-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "metastudio-operator.leaseName" -}}
{{- default (include "metastudio-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Container image reference: repository:tag, or repository@digest when a
digest is given.
*/}}
{{- define "metastudio-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Whether to create the PodDisruptionBudget: the podDisruptionBudget.enabled
value when it is a boolean, otherwise only when more than one replica runs.
Renders "true" or "".
*/}}
{{- define "metastudio-operator.pdbEnabled" -}}
{{- $enabled := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "bool" $enabled }}
{{- if $enabled }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true
{{- end }}
{{- end }}

{{/*
RBAC rules for watching and reconciling ActivationCodes, from
rbac/operator-rules.yaml (the one list of the API calls the operator makes,
checked against the code by tests/rbac.rs), with its restartTargets rules
when restartTargets.enabled; no wildcards anywhere.
*/}}
{{- define "metastudio-operator.rules" -}}
{{- $file := .Files.Get "rbac/operator-rules.yaml" | fromYaml }}
{{- $rules := $file.rules }}
{{- if .Values.restartTargets.enabled }}
{{- $rules = concat $rules $file.restartTargets }}
{{- end }}
{{- $rules | toYaml }}
{{- end }}

{{/*
RBAC rules on cluster-scoped kinds (ClusterMetaStudioConnections, their
status, Namespaces), from the clusterRules of rbac/operator-rules.yaml:
always in a ClusterRole, whatever watchNamespaces says.
*/}}
{{- define "metastudio-operator.clusterRules" -}}
{{- (.Files.Get "rbac/operator-rules.yaml" | fromYaml).clusterRules | toYaml }}
{{- end }}

{{/*
The RBAC rule for reading the credentials Secrets of
ClusterMetaStudioConnections, from the connectionSecrets of
rbac/operator-rules.yaml, as a list of one rule.
*/}}
{{- define "metastudio-operator.connectionSecretsRules" -}}
{{- list (.Files.Get "rbac/operator-rules.yaml" | fromYaml).connectionSecrets | toYaml }}
{{- end }}

{{/*
The verbs on the leader-election Lease, from rbac/operator-rules.yaml.
*/}}
{{- define "metastudio-operator.leaseVerbs" -}}
{{- (.Files.Get "rbac/operator-rules.yaml" | fromYaml).leases.verbs | toJson }}
{{- end }}

{{/*
RBAC rules of the once-code broker (TokenReview and SubjectAccessReview
create, both cluster-scoped), from the broker section of
rbac/operator-rules.yaml: in the ClusterRole <fullname>-broker when
broker.enabled.
*/}}
{{- define "metastudio-operator.brokerRules" -}}
{{- (.Files.Get "rbac/operator-rules.yaml" | fromYaml).broker | toYaml }}
{{- end }}

{{/*
Where the broker's certificate and key are mounted (the server reloads them
when the Secret is renewed).
*/}}
{{- define "metastudio-operator.brokerTlsDir" -}}
/etc/metastudio-operator/broker-tls
{{- end }}

{{/*
The name of the broker's kubernetes.io/tls Secret: broker.tls.secretName,
or <fullname>-broker-tls when cert-manager makes it. Fails, naming both
values, when the broker is enabled with neither.
*/}}
{{- define "metastudio-operator.brokerTlsSecretName" -}}
{{- $tls := .Values.broker.tls }}
{{- if $tls.secretName }}
{{- $tls.secretName }}
{{- else if $tls.certManager.enabled }}
{{- include "metastudio-operator.suffixedName" (dict "root" . "suffix" "broker-tls") }}
{{- else }}
{{- fail "broker.enabled=true needs a TLS certificate: set broker.tls.secretName to an existing kubernetes.io/tls Secret in the release namespace, or broker.tls.certManager.enabled=true (with broker.tls.certManager.issuerRef) to have cert-manager make one" }}
{{- end }}
{{- end }}

{{/*
Refuses broker settings the schema cannot judge: a port shared with the
metrics endpoint, cert-manager without an issuer. Renders nothing.
*/}}
{{- define "metastudio-operator.brokerChecks" -}}
{{- $broker := .Values.broker }}
{{- if $broker.enabled }}
{{- if eq (int $broker.port) (int .Values.metrics.port) }}
{{- fail (printf "broker.port and metrics.port are both %d: give the broker a port of its own" (int $broker.port)) }}
{{- end }}
{{- if and $broker.tls.certManager.enabled (not $broker.tls.certManager.issuerRef.name) }}
{{- fail "broker.tls.certManager.enabled=true needs broker.tls.certManager.issuerRef.name (and kind: Issuer or ClusterIssuer): the cert-manager issuer that signs the broker's certificate" }}
{{- end }}
{{- $_ := include "metastudio-operator.brokerTlsSecretName" . }}
{{- end }}
{{- end }}

{{/*
The full name with a suffix, e.g. "cluster": the full name is shortened
first, so that the result stays within 63 characters and never equals the
full name itself. Takes a dict: root (the chart context) and suffix.
*/}}
{{- define "metastudio-operator.suffixedName" -}}
{{- $suffix := printf "-%s" .suffix }}
{{- $base := include "metastudio-operator.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-" }}
{{- printf "%s%s" $base $suffix }}
{{- end }}

{{/*
A Role or ClusterRole granting the given rules, and the RoleBinding or
ClusterRoleBinding of the operator's ServiceAccount to it. Takes a dict:
root (the chart context), kind (Role or ClusterRole), name, namespace
(Roles only) and rules (YAML, a list of RBAC rules).
*/}}
{{- define "metastudio-operator.boundRole" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "metastudio-operator.labels" .root | nindent 4 }}
rules:
  {{- .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: {{ .kind }}Binding
metadata:
  name: {{ .name }}
  {{- with .namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "metastudio-operator.labels" .root | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: {{ .kind }}
  name: {{ .name }}
subjects:
  - kind: ServiceAccount
    name: {{ include "metastudio-operator.serviceAccountName" .root }}
    namespace: {{ .root.Release.Namespace }}
{{- end }}

{{/*
Whether the server enforces CEL validation rules (x-kubernetes-validations,
beta and on by default since Kubernetes 1.25): "true" or "". Older servers
refuse the field on server-side apply (and would not enforce it), so the
CRD templates leave the rules out there.
*/}}
{{- define "metastudio-operator.celRules" -}}
{{- if semverCompare ">=1.25.0-0" .Capabilities.KubeVersion.Version }}true{{ end }}
{{- end }}

{{/*
The PodDisruptionBudget's apiVersion: policy/v1 where the server serves it
(1.21 and later), else policy/v1beta1 (removed in 1.25). The server's
version decides too, so that `helm template --kube-version` renders what
that version serves.
*/}}
{{- define "metastudio-operator.pdbApiVersion" -}}
{{- if and (.Capabilities.APIVersions.Has "policy/v1") (semverCompare ">=1.21.0-0" .Capabilities.KubeVersion.Version) -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end }}
{{- end }}
