{{/* The live object (list apiVersion kind namespace name) as YAML, or `{}` on first install and with `helm template`. Tests replace this one define with a stub to simulate an upgrade. */}}
{{- define "datapipe.lookup" -}}
{{- toYaml (lookup (index . 0) (index . 1) (index . 2) (index . 3)) -}}
{{- end -}}
