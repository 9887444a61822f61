{#-
  Objects the models need, created idempotently by the on-run-start hook (dbt_project.yml):
  - the schemas, so hooks and macros can reference them before the first model runs;
  - staging.dbt_watermarks: per incremental model, the highest upstream cursor it has consumed;
  - the indicator state type, staging.datapipe_indicator_step and staging.datapipe_indicators:
    the aggregate behind the recursive indicators, and the clean-up of older versions' objects
    (see macros/indicators.sql and docs/transform.md).
  One DO block under an advisory lock, so parallel dbt invocations (Cosmos runs one per model)
  never race on CREATE OR REPLACE.
-#}
{% macro datapipe_create_support_objects() %}
do $datapipe$
declare
  stale record;
begin
  perform pg_advisory_xact_lock(hashtext('datapipe_support_objects'));
  create schema if not exists staging;
  create schema if not exists {{ env_var('DATAPIPE_AUDIT_SCHEMA', 'audit') }};
  create table if not exists staging.dbt_watermarks (
    model text primary key,
    watermark bigint,
    watermark_at timestamptz,
    updated_at timestamptz not null default now()
  );
  {{- datapipe_indicator_objects_ddl() }}
end
$datapipe$;
{% endmacro %}


{#-
  The watermark an incremental model has consumed, as a LITERAL read when the model runs (dbt
  compiles each node just before executing it): the planner then sees the real cutoff and reads
  the few new rows through an index, where a subquery would make it plan for a third of the table.
-#}
{% macro datapipe_watermark(model_name) -%}
{{ datapipe_query_literal("select coalesce(max(watermark), 0)::text from staging.dbt_watermarks where model = '" ~ model_name ~ "'", "0") }}
{%- endmacro %}

{#- The timestamp watermark as a timestamptz literal, or '-infinity'. -#}
{% macro datapipe_watermark_at(model_name) -%}
{{ datapipe_query_literal("select quote_literal(coalesce(max(watermark_at), '-infinity'::timestamptz)) || '::timestamptz' from staging.dbt_watermarks where model = '" ~ model_name ~ "'", "'-infinity'::timestamptz") }}
{%- endmacro %}

{#- The single value of a query at run time (a SQL literal it builds itself); `parse_value` at parse time. -#}
{% macro datapipe_query_literal(query, parse_value) -%}
{%- if execute -%}
{{ run_query(query).columns[0].values()[0] }}
{%- else -%}
{{ parse_value }}
{%- endif -%}
{%- endmacro %}

{#- Post-hook: record what a model consumed (runs in the model's transaction). -#}
{% macro datapipe_set_watermark(model_name, watermark_sql='null', watermark_at_sql='null') -%}
insert into staging.dbt_watermarks (model, watermark, watermark_at, updated_at)
values ('{{ model_name }}', {{ watermark_sql }}, {{ watermark_at_sql }}, now())
on conflict (model) do update
  set watermark = excluded.watermark, watermark_at = excluded.watermark_at, updated_at = excluded.updated_at
{%- endmacro %}
