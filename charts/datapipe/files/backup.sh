#!/usr/bin/env bash
# Dump the warehouse (pg_dump custom format) into BACKUP_DIR and keep the newest BACKUP_KEEP dumps.
# Connection: the libpq variables (PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE) of the
# pipeline role, which owns every warehouse schema. A dump is written under a temporary name and
# renamed only when pg_dump succeeded, so a failed run never deletes a good dump.
set -euo pipefail
dir=${BACKUP_DIR:?BACKUP_DIR is required}
keep=${BACKUP_KEEP:-7}
case "$keep" in ''|*[!0-9]*|0) echo "BACKUP_KEEP must be a positive integer, got '$keep'" >&2; exit 2 ;; esac
mkdir -p "$dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
target="$dir/warehouse-$stamp.dump"
n=1
while [ -e "$target" ]; do target="$dir/warehouse-$stamp-$n.dump"; n=$((n + 1)); done
trap 'rm -f -- "$target.partial"' EXIT
pg_dump --format=custom --no-password --file="$target.partial" "${PGDATABASE:?PGDATABASE is required}"
mv "$target.partial" "$target"
echo "backup written: $target ($(wc -c <"$target") bytes)"
# Retention by count: the names sort by time; delete all but the newest $keep.
mapfile -t dumps < <(find "$dir" -maxdepth 1 -name 'warehouse-*.dump' -type f | sort)
excess=$(( ${#dumps[@]} - keep ))
for ((i = 0; i < excess; i++)); do
  rm -f -- "${dumps[$i]}"
  echo "removed old backup: ${dumps[$i]}"
done
