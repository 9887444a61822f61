#!/usr/bin/env bash
# Restore one database from a backup set written by backup.sh:
#   restore.sh [SET | DUMP]
# SET is a backup-<time> directory (default: the newest verified set in BACKUP_DIR); its
# <PGDATABASE>.dump is restored. DUMP is a dump file (also an older chart's warehouse-*.dump).
# Connect as the database's owner (the pipeline role for the warehouse, the airflow role for
# Airflow's metadata database), never as a superuser. In ONE transaction: every object that owner
# owns in the database is dropped (DROP OWNED BY CURRENT_USER CASCADE: the project's schemas and
# all in them, including objects the dump does not know, such as a newer model or a store_failures
# table), then the dump is replayed: schemas, tables, data, sequences, grants and default
# privileges (so the dashboard role reads the marts again). Any error rolls it all back: nothing
# changes. The dump is checked first (the set's checksum, the size floor, pg_restore --list).
# Roles are not restored here: on a new server replay globals.sql as a superuser (docs/kubernetes.md).
set -euo pipefail
target=${1:-}
db=${PGDATABASE:?PGDATABASE is required: the database to restore}
min_bytes=${BACKUP_MIN_DUMP_BYTES:-4096}
lock_timeout=${RESTORE_LOCK_TIMEOUT:-60s}

fail() { echo "restore refused, nothing changed: $*" >&2; exit 1; }

if [ -z "$target" ]; then
  dir=${BACKUP_DIR:?give a backup set or a dump file, or set BACKUP_DIR}
  [ -d "$dir" ] || fail "no verified backup set (backup-*/MANIFEST) in $dir: the directory does not exist"
  target=$(find "$dir" -maxdepth 1 -mindepth 1 -type d -name 'backup-*' -exec test -f '{}/MANIFEST' ';' -print | sort | tail -n 1)
  [ -n "$target" ] || fail "no verified backup set (backup-*/MANIFEST) in $dir"
fi
if [ -d "$target" ]; then
  [ -f "$target/MANIFEST" ] || fail "$target is not a verified backup set (no MANIFEST)"
  dump="$target/$db.dump"
  [ -f "$dump" ] || fail "$target holds no dump of database $db: $(cd "$target" && echo *.dump)"
  (cd "$target" && grep " $db.dump\$" SHA256SUMS | sha256sum --check --quiet --strict) \
    || fail "$dump does not match its checksum in $target/SHA256SUMS"
else
  dump=$target
  [ -f "$dump" ] || fail "dump not found: $dump"
fi
size=$(wc -c <"$dump")
[ "$size" -ge "$min_bytes" ] || fail "$dump is $size bytes, below BACKUP_MIN_DUMP_BYTES=$min_bytes"
pg_restore --list "$dump" >/dev/null || fail "$dump: table of contents unreadable"

owner=$(psql -X -At -v ON_ERROR_STOP=1 --no-password -c \
  "select r.rolsuper::text || ' ' || (d.datdba = r.oid)::text from pg_roles r, pg_database d
    where r.rolname = current_user and d.datname = current_database()") || fail "cannot connect to database $db"
case "$owner" in
  "false true") ;;
  "true "*) fail "connected as a superuser; connect as the owner of database $db" ;;
  *) fail "${PGUSER:-the current user} does not own database $db; connect as its owner" ;;
esac

echo "restoring $dump into database $db as ${PGUSER:-the current user}"
# COMMIT is sent only after pg_restore wrote the whole script (`&&`: set -e does not apply left of
# `||`): if pg_restore fails, psql reaches the end of its input inside the transaction and the
# server rolls it back; psql itself stops at the first error (ON_ERROR_STOP).
{
  echo "begin;"
  echo "set local client_min_messages = warning;"
  echo "set local lock_timeout = '$lock_timeout';"
  echo "drop owned by current_user cascade;"
  pg_restore --no-password --file=- "$dump" && echo "commit;"
} | psql -X -q -v ON_ERROR_STOP=1 --no-password -o /dev/null \
  || fail "the restore failed and was rolled back (a lock not obtained within RESTORE_LOCK_TIMEOUT=$lock_timeout means writers or readers are still connected)"
psql -X -q --no-password -c "set client_min_messages = error" -c analyze >/dev/null \
  || echo "note: analyze failed; the planner catches up by itself" >&2
echo "restore finished: $(psql -X -At --no-password -c "select count(*) from pg_tables where tableowner = current_user") tables of $PGUSER in $db"
