{#-
  Alpha Vantage sends every number as a string. A value that is not a plain decimal number
  (empty string, "NaN", "None", "-", "1e5x" ...) becomes NULL instead of failing the cast, so the
  not_null tests name the bad rows and the build stops before anything reaches the marts.
-#}
{% macro datapipe_parse_numeric(text_expr) -%}
case when btrim({{ text_expr }}) ~ '^[+-]?[0-9]+(\.[0-9]+)?$' then btrim({{ text_expr }})::numeric end
{%- endmacro %}

{% macro datapipe_parse_bigint(text_expr) -%}
case when btrim({{ text_expr }}) ~ '^[+-]?[0-9]{1,18}$' then btrim({{ text_expr }})::bigint end
{%- endmacro %}

{#- OVERVIEW fields: "None", "-", "" mean missing (a legitimate absence, not an error). -#}
{% macro datapipe_overview_text(field) -%}
nullif(nullif(nullif(btrim(payload ->> '{{ field }}'), ''), 'None'), '-')
{%- endmacro %}

{% macro datapipe_overview_numeric(field) -%}
{{ datapipe_parse_numeric(datapipe_overview_text(field)) }}
{%- endmacro %}
