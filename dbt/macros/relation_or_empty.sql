{#-
  `select <columns> from <relation>` when the relation exists, else the same columns, typed, with no
  rows. For a relation that another DAG writes and a fresh deployment may not have yet: the live
  quotes compare against the published daily closes, which exist only after the daily DAG's first
  publish; until then the quotes are published without a change (docs/transform.md).
  `columns` maps each column name to its SQL type. Checked at run time (adapter.get_relation); at
  parse time the relation is assumed to exist, so the source stays in the lineage.
-#}
{% macro datapipe_relation_or_empty(relation, columns) -%}
    {%- set found = adapter.get_relation(database=relation.database, schema=relation.schema,
                                         identifier=relation.identifier) if execute else relation -%}
    {%- if found is none %}
    {#- not there yet: an empty set of the same shape -#}
    select
        {%- for name, type in columns.items() %}
        null::{{ type }} as {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    where false
    {%- else %}
    select
        {%- for name in columns %}
        {{ name }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ relation }}
    {%- endif %}
{%- endmacro %}
