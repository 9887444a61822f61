#!/usr/bin/env bash
# Pod Security Admission labels of the release namespace (docs/kubernetes.md, "Pod Security").
#
#   tools/pod-security.sh prepare NAMESPACE   before `helm upgrade`: create the namespace if it is
#       missing and, if it has no enforce label yet, label it enforce=baseline, warn=restricted,
#       audit=restricted (the API server then warns about every pod that would fail `restricted`).
#   tools/pod-security.sh settle NAMESPACE    after the release is up: ask the API server (a
#       server-side dry run of the label change) whether every pod in the namespace passes
#       `restricted`. Yes: label enforce=restricted. No: keep enforce=baseline with warn/audit
#       restricted, and print the pods and controls that fail.
#
# POD_SECURITY=auto (default) acts only on the kind cluster of the Makefile (kubectl context
# kind-$CLUSTER); yes acts on any cluster (needs the right to label namespaces); no does nothing.
# KUBECTL names the kubectl binary (default: kubectl).
set -euo pipefail
kubectl=${KUBECTL:-kubectl}
mode=${POD_SECURITY:-auto}
cmd=${1:-}
ns=${2:-}
label=pod-security.kubernetes.io
if [[ ! "$cmd" =~ ^(prepare|settle)$ || -z "$ns" ]]; then
  echo "usage: tools/pod-security.sh prepare|settle NAMESPACE" >&2
  exit 2
fi
case "$mode" in
  yes) ;;
  no) exit 0 ;;
  auto)
    context=$("$kubectl" config current-context 2>/dev/null || true)
    [ "$context" = "kind-${CLUSTER:-datapipe}" ] || exit 0
    ;;
  *) echo "POD_SECURITY must be auto, yes or no (got '$mode')" >&2; exit 2 ;;
esac

set_level() {
  "$kubectl" label --overwrite namespace "$ns" "$label/enforce=$1" "$label/warn=restricted" \
    "$label/audit=restricted" >/dev/null
}

if [ "$cmd" = prepare ]; then
  if ! "$kubectl" get namespace "$ns" >/dev/null 2>&1; then
    "$kubectl" create namespace "$ns" >/dev/null
  fi
  level=$("$kubectl" get namespace "$ns" -o jsonpath="{.metadata.labels.pod-security\.kubernetes\.io/enforce}")
  if [ -z "$level" ]; then
    level=baseline
    set_level "$level"
  fi
  echo "==> namespace $ns: Pod Security enforce=$level, warn/audit=restricted"
  exit 0
fi

# settle: the API server evaluates every existing pod against the new enforce level and answers
# with a warning per violating pod; --dry-run=server changes nothing.
answer=$("$kubectl" label --dry-run=server --overwrite namespace "$ns" "$label/enforce=restricted" 2>&1) || {
  echo "$answer" >&2
  exit 1
}
if grep -qi "violate" <<<"$answer"; then
  set_level baseline
  echo "==> namespace $ns: Pod Security enforce=baseline, warn/audit=restricted; not every pod passes restricted:"
  grep -i "warning" <<<"$answer" | sed 's/^/    /'
else
  set_level restricted
  echo "==> namespace $ns: Pod Security enforce=restricted (every pod of the namespace passes)"
fi
