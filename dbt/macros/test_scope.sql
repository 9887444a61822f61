{#-
  Incremental data tests. A test configured with one of these `where` values checks only the rows
  that changed since the marts were last published; every other row was already tested by the
  build that led to that publish and has not changed since:

    where: "datapipe: changed facts"   rows whose (symbol, trade_date) the indicator model
                                       recomputed after the published watermark
                                       (ops.publish_history.audit_watermark)
    where: "datapipe: new staging rows" staging bars from payloads the indicator model had not
                                       consumed at the last publish (ops.publish_history.source_watermark)

  Set per folder in dbt_project.yml; it applies to the two fact models and to
  stg_alphavantage__daily_prices respectively, every other model's tests run on the whole model.
  With no usable publish (first run, nothing published yet, or a full refresh that recomputed
  more than `datapipe_max_changed_fraction` of the table) the test runs on the whole model. Any other `where` works as
  in dbt. The published watermarks are read when the test runs, never at parse time.
-#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where == 'datapipe: changed facts' and relation.identifier in ('fct_daily_prices', 'fct_technical_indicators') -%}
        {%- set cutoff = datapipe_published_watermark('audit_watermark') -%}
        {%- if cutoff is none or datapipe_too_many_changed("computed_at > " ~ cutoff) -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where (symbol, trade_date) in (
                select symbol, trade_date from staging.int_daily_prices__indicators where computed_at > {{ cutoff }}
            )) as changed_facts
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- elif where == 'datapipe: new staging rows' and relation.identifier == 'stg_alphavantage__daily_prices' -%}
        {%- set cutoff = datapipe_published_watermark('source_watermark') -%}
        {%- if cutoff is none -%}
            {%- do return(relation) -%}
        {%- endif -%}
        {%- do return("(select * from " ~ relation ~ " where source_payload_id > " ~ cutoff ~ ") as new_staging_rows") -%}
    {%- elif where and where.startswith('datapipe: ') -%}
        {#- set for a whole folder (dbt_project.yml); models without that kind of rows are tested whole -#}
        {%- do return(relation) -%}
    {%- elif where -%}
        {%- do return("(select * from " ~ relation ~ " where " ~ where ~ ") dbt_subquery") -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The watermark column of the latest successful publish as a SQL literal, or none. -#}
{% macro datapipe_published_watermark(column) -%}
    {%- if not execute -%}{%- do return(none) -%}{%- endif -%}
    {%- set exists = run_query(
        "select count(*) from pg_attribute where attrelid = to_regclass('ops.publish_history')"
        ~ " and attname = '" ~ column ~ "' and not attisdropped").columns[0].values()[0] -%}
    {%- if exists == 0 -%}{%- do return(none) -%}{%- endif -%}
    {%- set value = run_query(
        "select quote_literal(" ~ column ~ ") from ops.publish_history where status = 'published'"
        ~ " order by publish_id desc limit 1").columns[0].values() -%}
    {%- if value | length == 0 or value[0] is none -%}{%- do return(none) -%}{%- endif -%}
    {%- do return(value[0]) -%}
{%- endmacro %}

{#- True when the changed indicator rows are more than the var datapipe_max_changed_fraction (a quarter)
    of the table (scoping would not pay). -#}
{% macro datapipe_too_many_changed(condition) -%}
    {%- set row = run_query(
        "select (select count(*) from staging.int_daily_prices__indicators where " ~ condition ~ ")"
        ~ " > " ~ var("datapipe_max_changed_fraction") ~ " * (select coalesce(sum(greatest(reltuples, 0)), 0) from pg_class"
        ~ " where relnamespace = 'staging'::regnamespace and relkind = 'r'"
        ~ " and relname in ('int_daily_prices__indicators_shard_0', 'int_daily_prices__indicators_shard_1'))"
    ).columns[0].values() -%}
    {%- do return(row[0]) -%}
{%- endmacro %}
