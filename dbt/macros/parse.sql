{#-
  Alpha Vantage sends every number as a string. A value that is not a finite number (empty
  string, "NaN", "Infinity", "None", "1.2.3" ...) becomes NULL instead of failing the cast, so a
  data test names the bad rows and the build stops before anything reaches the marts.
  pg_input_is_valid (PostgreSQL >= 16) is a C check, cheaper per value than a regex: it
  matters at 2.5 M bars x 5 values.
-#}
{% macro datapipe_parse_numeric(text_expr) -%}
case
    when pg_input_is_valid({{ text_expr }}, 'numeric') and strpos(lower({{ text_expr }}), 'n') = 0
        then ({{ text_expr }})::numeric
end
{%- endmacro %}

{% macro datapipe_parse_bigint(text_expr) -%}
case when pg_input_is_valid({{ text_expr }}, 'bigint') then ({{ text_expr }})::bigint end
{%- endmacro %}

{#- A YYYY-MM-DD key (the only date format Alpha Vantage uses), else NULL. -#}
{% macro datapipe_parse_iso_date(text_expr) -%}
case
    when length({{ text_expr }}) = 10 and substr({{ text_expr }}, 5, 1) = '-' and substr({{ text_expr }}, 8, 1) = '-'
        and pg_input_is_valid({{ text_expr }}, 'date')
        then ({{ text_expr }})::date
end
{%- endmacro %}

{#- OVERVIEW (and ETF_PROFILE) fields: "None", "-", "n/a", "" mean missing (a legitimate absence, not an error). -#}
{% macro datapipe_overview_text(field) -%}
nullif(nullif(nullif(nullif(btrim(payload ->> '{{ field }}'), ''), 'None'), '-'), 'n/a')
{%- endmacro %}

{% macro datapipe_overview_numeric(field) -%}
{{ datapipe_parse_numeric(datapipe_overview_text(field)) }}
{%- endmacro %}
