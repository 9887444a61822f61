#!/usr/bin/env bash
# Diagnostics of a release for a failed CI run: objects, events, every container's logs (current and
# previous) and the Airflow task logs from the scheduler. Writes no secret: Secrets are listed by
# name only. Usage: tools/collect-logs.sh RELEASE NAMESPACE OUT_DIR
set -uo pipefail
release=${1:?release}; ns=${2:?namespace}; out=${3:?output directory}
kubectl=${KUBECTL:-kubectl}
mkdir -p "$out/logs"
"$kubectl" -n "$ns" get all,pvc,networkpolicy,configmap,secret -o wide > "$out/objects.txt" 2>&1
"$kubectl" -n "$ns" get events --sort-by=.lastTimestamp > "$out/events.txt" 2>&1
"$kubectl" -n "$ns" describe pods > "$out/pods-describe.txt" 2>&1
for pod in $("$kubectl" -n "$ns" get pods -o name 2>/dev/null); do
  name=${pod#pod/}
  for c in $("$kubectl" -n "$ns" get "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}'); do
    "$kubectl" -n "$ns" logs "$pod" -c "$c" > "$out/logs/$name.$c.log" 2>&1
    "$kubectl" -n "$ns" logs "$pod" -c "$c" --previous > "$out/logs/$name.$c.previous.log" 2>/dev/null || rm -f "$out/logs/$name.$c.previous.log"
  done
done
scheduler=$("$kubectl" -n "$ns" get pods -l "component=scheduler,release=$release" -o name 2>/dev/null | head -n 1)
if [ -n "$scheduler" ]; then
  "$kubectl" -n "$ns" exec "$scheduler" -c scheduler -- tar -C /opt/airflow/logs -czf - . > "$out/airflow-task-logs.tgz" 2>/dev/null \
    || echo "could not copy Airflow task logs from $scheduler" >> "$out/objects.txt"
fi
echo "diagnostics written to $out"
