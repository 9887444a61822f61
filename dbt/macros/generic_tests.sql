{#- Generic data tests (no dbt packages: nothing is downloaded at build or run time). -#}

{#- Every row satisfies a boolean SQL expression (fails with the rows that do not). -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not coalesce(({{ expression }}), false)
{% endtest %}

{#- A date column holds no Saturday or Sunday. -#}
{% test no_weekend_dates(model, column_name) %}
select {{ column_name }}
from {{ model }}
where extract(isodow from {{ column_name }}) in (6, 7)
{% endtest %}

{#- The combination of columns is unique. -#}
{% test unique_combination(model, combination) %}
select {{ combination | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1
{% endtest %}
