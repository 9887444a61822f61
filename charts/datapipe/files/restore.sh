#!/usr/bin/env bash
# Restore a dump written by backup.sh into the warehouse database named by PGDATABASE:
#   restore.sh [DUMP]     (default: the newest warehouse-*.dump in BACKUP_DIR)
# Objects in the dump are dropped and recreated (--clean --if-exists) in one transaction: either
# the whole dump is restored or nothing changes. Connect as the pipeline role (the owner).
set -euo pipefail
dump=${1:-}
if [ -z "$dump" ]; then
  dir=${BACKUP_DIR:?give a dump file or set BACKUP_DIR}
  dump=$(find "$dir" -maxdepth 1 -name 'warehouse-*.dump' -type f | sort | tail -n 1)
  [ -n "$dump" ] || { echo "no warehouse-*.dump in $dir" >&2; exit 1; }
fi
[ -f "$dump" ] || { echo "dump not found: $dump" >&2; exit 1; }
echo "restoring $dump into database ${PGDATABASE:?PGDATABASE is required}"
pg_restore --clean --if-exists --single-transaction --exit-on-error --no-password \
  --dbname="$PGDATABASE" "$dump"
echo "restore finished"
