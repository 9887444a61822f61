#!/usr/bin/env bash
# Create or update the warehouse roles and databases (idempotent). Runs twice by design:
# from /docker-entrypoint-initdb.d on the first start of the data directory (before the server
# accepts TCP connections), and from the `warehouse-init` Job on every install/upgrade, so a
# rotated password or a newly enabled Airflow reaches the server.
# Input (environment): PIPELINE_USER PIPELINE_PASSWORD DASHBOARD_USER DASHBOARD_PASSWORD
# WAREHOUSE_DB, optional AIRFLOW_PASSWORD (creates role + database `airflow`), optional BACKUP_USER
# + BACKUP_PASSWORD (the backup CronJob's role: LOGIN, member of pg_read_all_data, CONNECT on the
# warehouse and airflow databases, no other right), and libpq connection variables for a superuser
# (the image's entrypoint provides them on first init).
set -euo pipefail
: "${PIPELINE_USER:?}" "${PIPELINE_PASSWORD:?}" "${DASHBOARD_USER:?}" "${DASHBOARD_PASSWORD:?}" "${WAREHOUSE_DB:?}"
with_airflow=false
if [ -n "${AIRFLOW_PASSWORD:-}" ]; then with_airflow=true; fi
with_backup=false
if [ -n "${BACKUP_USER:-}" ]; then
  : "${BACKUP_PASSWORD:?BACKUP_PASSWORD is required with BACKUP_USER}"
  with_backup=true
fi
psql_admin() { psql -X -q -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" "$@"; }

psql_admin --dbname postgres \
  -v pipeline_user="$PIPELINE_USER" -v pipeline_password="$PIPELINE_PASSWORD" \
  -v dashboard_user="$DASHBOARD_USER" -v dashboard_password="$DASHBOARD_PASSWORD" \
  -v warehouse_db="$WAREHOUSE_DB" -v with_airflow="$with_airflow" \
  -v airflow_password="${AIRFLOW_PASSWORD:-}" -v with_backup="$with_backup" \
  -v backup_user="${BACKUP_USER:-}" -v backup_password="${BACKUP_PASSWORD:-}" <<'SQL'
select format('create role %I login', :'pipeline_user')
 where not exists (select from pg_roles where rolname = :'pipeline_user') \gexec
select format('create role %I login', :'dashboard_user')
 where not exists (select from pg_roles where rolname = :'dashboard_user') \gexec
select format('alter role %I with login password %L', :'pipeline_user', :'pipeline_password') \gexec
select format('alter role %I with login password %L', :'dashboard_user', :'dashboard_password') \gexec
select format('create database %I owner %I', :'warehouse_db', :'pipeline_user')
 where not exists (select from pg_database where datname = :'warehouse_db') \gexec
select format('revoke all on database %I from public', :'warehouse_db') \gexec
select format('grant connect on database %I to %I', :'warehouse_db', :'dashboard_user') \gexec
\if :with_airflow
select 'create role airflow login' where not exists (select from pg_roles where rolname = 'airflow') \gexec
select format('alter role airflow with login password %L', :'airflow_password') \gexec
select 'create database airflow owner airflow' where not exists (select from pg_database where datname = 'airflow') \gexec
revoke all on database airflow from public;
\endif
\if :with_backup
select format('create role %I login', :'backup_user')
 where not exists (select from pg_roles where rolname = :'backup_user') \gexec
select format('alter role %I with login inherit nosuperuser nocreatedb nocreaterole noreplication nobypassrls password %L',
              :'backup_user', :'backup_password') \gexec
select format('grant pg_read_all_data to %I', :'backup_user') \gexec
select format('grant connect on database %I to %I', :'warehouse_db', :'backup_user') \gexec
select format('grant connect on database airflow to %I', :'backup_user')
 where exists (select from pg_database where datname = 'airflow') \gexec
\endif
SQL
psql_admin --dbname "$WAREHOUSE_DB" -c 'revoke create on schema public from public'
echo "warehouse roles and databases are in place"
