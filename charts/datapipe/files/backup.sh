#!/usr/bin/env bash
# Back up the warehouse server into one backup set in BACKUP_DIR:
#   BACKUP_DIR/backup-<UTC time>/<database>.dump   every database of BACKUP_DATABASES (pg_dump, custom format)
#                                /globals.sql       the roles and memberships (pg_dumpall --globals-only,
#                                                   without passwords: those live in the Kubernetes Secrets)
#                                /SHA256SUMS, /MANIFEST
# A set counts only once verified: each dump is at least BACKUP_MIN_DUMP_BYTES, its table of
# contents reads back (pg_restore --list) and so does its whole archive (pg_restore to /dev/null), the
# roles file is complete. It is written as .backup-<time>.partial and renamed only then, so a failed
# run deletes nothing but its own partial set. Retention then keeps the newest BACKUP_KEEP verified
# sets and removes any older than BACKUP_MAX_AGE_DAYS (0: no age limit); the set just written is
# always kept. Dumps of older chart versions (warehouse-*.dump) are left alone.
# Connection: the libpq variables (PGHOST PGPORT PGUSER PGPASSWORD PGSSLMODE) of the backup role:
# LOGIN, member of pg_read_all_data, CONNECT on those databases, nothing else (warehouse-init.sh).
set -euo pipefail
dir=${BACKUP_DIR:?BACKUP_DIR is required}
keep=${BACKUP_KEEP:-7}
max_age_days=${BACKUP_MAX_AGE_DAYS:-30}
min_bytes=${BACKUP_MIN_DUMP_BYTES:-4096}
databases=${BACKUP_DATABASES:-${PGDATABASE:-}}
[ -n "$databases" ] || { echo "set BACKUP_DATABASES (or PGDATABASE): the databases to dump" >&2; exit 2; }
case "$keep" in ''|*[!0-9]*|0) echo "BACKUP_KEEP must be a positive integer, got '$keep'" >&2; exit 2 ;; esac
case "$max_age_days" in ''|*[!0-9]*) echo "BACKUP_MAX_AGE_DAYS must be a whole number of days (0: no limit), got '$max_age_days'" >&2; exit 2 ;; esac
case "$min_bytes" in ''|*[!0-9]*) echo "BACKUP_MIN_DUMP_BYTES must be a whole number, got '$min_bytes'" >&2; exit 2 ;; esac

fail() { echo "backup FAILED, nothing counted and nothing removed: $*" >&2; exit 1; }

# Checks one dump; prints its number of table-of-contents entries.
verify_dump() {
  local file=$1 size entries
  size=$(wc -c <"$file")
  [ "$size" -ge "$min_bytes" ] \
    || fail "$(basename "$file") is $size bytes, below BACKUP_MIN_DUMP_BYTES=$min_bytes: an empty or incomplete dump does not count"
  entries=$(pg_restore --list "$file" | grep -c '^[0-9]') || fail "$(basename "$file"): table of contents unreadable"
  pg_restore --file=/dev/null "$file" || fail "$(basename "$file"): the archive does not read back to its end"
  echo "$entries"
}

mkdir -p "$dir"
find "$dir" -maxdepth 1 -name '.backup-*.partial' -exec rm -rf -- {} +  # left by an interrupted run
stamp=$(date -u +%Y%m%dT%H%M%SZ)
name=backup-$stamp
n=1
while [ -e "$dir/$name" ]; do name=backup-$stamp-$n; n=$((n + 1)); done
partial="$dir/.$name.partial"
trap 'rm -rf -- "$partial"' EXIT
mkdir "$partial"

for db in $databases; do
  pg_dump --format=custom --no-password --file="$partial/$db.dump" --dbname="$db" || fail "pg_dump of database $db"
done
pg_dumpall --globals-only --no-role-passwords --no-password --file="$partial/globals.sql" || fail "pg_dumpall --globals-only"

{
  echo "created_at $stamp"
  for db in $databases; do
    entries=$(verify_dump "$partial/$db.dump")
    echo "$db.dump $(wc -c <"$partial/$db.dump") bytes, $entries entries"
  done
  grep -q '^CREATE ROLE ' "$partial/globals.sql" && grep -q 'database cluster dump complete' "$partial/globals.sql" \
    || fail "globals.sql: no roles or an incomplete file"
  echo "globals.sql $(wc -c <"$partial/globals.sql") bytes, $(grep -c '^CREATE ROLE ' "$partial/globals.sql") roles"
} >"$partial/MANIFEST.tmp"
(cd "$partial" && sha256sum -- *.dump globals.sql >SHA256SUMS)
mv "$partial/MANIFEST.tmp" "$partial/MANIFEST"
mv "$partial" "$dir/$name"
trap - EXIT
echo "backup verified: $dir/$name"
sed 's/^/  /' "$dir/$name/MANIFEST"

# Retention over verified sets, newest first (names sort by time); the newest is the one just written.
cutoff=""
if [ "$max_age_days" -gt 0 ]; then
  cutoff=$(date -u -d "@$(( $(date -u +%s) - max_age_days * 86400 ))" +%Y%m%dT%H%M%SZ)
fi
mapfile -t sets < <(find "$dir" -maxdepth 1 -mindepth 1 -type d -name 'backup-*' -exec test -f '{}/MANIFEST' ';' -print | sort -r)
for i in "${!sets[@]}"; do
  [ "$i" -eq 0 ] && continue
  set_name=$(basename "${sets[$i]}")
  set_time=${set_name#backup-}
  if [ "$i" -ge "$keep" ]; then
    reason="beyond the newest $keep"
  elif [ -n "$cutoff" ] && [[ "${set_time:0:16}" < "$cutoff" ]]; then
    reason="older than $max_age_days days"
  else
    continue
  fi
  rm -rf -- "${sets[$i]}"
  echo "removed backup $set_name ($reason)"
done
