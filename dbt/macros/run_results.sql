{#-
  dbt's results in the warehouse, whatever runs dbt (`make pipeline`'s one `dbt build`, the DAG's
  `dbt source freshness` and its watcher producer's `dbt build`, a retried model or test task's
  `dbt run` / `dbt test` of its node): the on-run-end hook of dbt_project.yml
  records, for the pipeline run `DATAPIPE_RUN_ID` (the Airflow run id; one id per `make pipeline`;
  unset: dbt's invocation id):
  - ops.dbt_run_nodes: every model and test of the manifest dbt ran with (what the run must pass);
  - ops.dbt_results: one row per model or test this invocation executed, with its status, and one per
    source `dbt source freshness` checked (resource_type 'source': pass / warn / error; never in
    ops.dbt_run_nodes, so publish's verdict does not count them). The DAG's warning alerts read them.
  `quality publish` refuses unless the latest result of every node of the run passed (docs/transform.md).
  The hook creates its tables itself (idempotent, under the support objects' advisory lock, so
  parallel invocations never race): the macro is the whole feature, one file.
-#}

{#- The pipeline run this dbt invocation belongs to. -#}
{% macro datapipe_run_id() -%}
{{ return(env_var('DATAPIPE_RUN_ID', '') | trim or invocation_id) }}
{%- endmacro %}

{#- DDL of the two tables (inside a DO block). -#}
{% macro datapipe_run_results_ddl() %}
  create schema if not exists ops;
  create table if not exists ops.dbt_run_nodes (
    run_id text not null,
    unique_id text not null,
    resource_type text not null,
    recorded_at timestamptz not null default clock_timestamp(),
    primary key (run_id, unique_id)
  );
  create table if not exists ops.dbt_results (
    result_id bigint generated always as identity primary key,
    run_id text not null,
    invocation_id text not null,
    unique_id text not null,
    resource_type text not null,
    status text not null,
    failures bigint,
    message text,
    execution_time_s double precision,
    recorded_at timestamptz not null default clock_timestamp()
  );
  create index if not exists dbt_results_run_node on ops.dbt_results (run_id, unique_id, result_id);
{% endmacro %}

{#- A SQL string literal (or null). -#}
{% macro datapipe_sql_text(value, limit=2000) -%}
{%- if value is none -%}null{%- else -%}'{{ (value | string)[:limit] | replace("'", "''") }}'{%- endif -%}
{%- endmacro %}

{#- The on-run-end hook: the manifest's models and tests for the run, then this invocation's results. -#}
{% macro datapipe_record_results(results) %}
{%- if execute -%}
{%- set run_id = datapipe_run_id() -%}
do $datapipe$
begin
  perform pg_advisory_xact_lock(hashtext('datapipe_support_objects'));
  {{ datapipe_run_results_ddl() }}
end
$datapipe$;
{%- set nodes = [] -%}
{%- for node in graph.nodes.values() if node.resource_type in ('model', 'test') -%}
  {%- do nodes.append(node) -%}
{%- endfor -%}
{%- set executed = [] -%}
{%- for result in results if result.node.resource_type in ('model', 'test', 'source') -%}
  {%- do executed.append(result) -%}
{%- endfor -%}
{%- if nodes %}
insert into ops.dbt_run_nodes (run_id, unique_id, resource_type) values
{%- for node in nodes %}
  ({{ datapipe_sql_text(run_id) }}, {{ datapipe_sql_text(node.unique_id) }}, '{{ node.resource_type }}'){{ "," if not loop.last }}
{%- endfor %}
on conflict (run_id, unique_id) do nothing;
{%- endif %}
{%- if executed %}
insert into ops.dbt_results (run_id, invocation_id, unique_id, resource_type, status, failures, message,
                             execution_time_s) values
{%- for result in executed %}
  ({{ datapipe_sql_text(run_id) }}, '{{ invocation_id }}', {{ datapipe_sql_text(result.node.unique_id) }},
   '{{ result.node.resource_type }}', {{ datapipe_sql_text(result.status) }},
   {{ result.failures if result.failures is not none else 'null' }}, {{ datapipe_sql_text(result.message) }},
   {{ result.execution_time or 0 }}){{ "," if not loop.last }}
{%- endfor %};
{%- endif %}
{%- endif -%}
{% endmacro %}
