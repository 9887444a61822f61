{#-
  Source freshness on the session clock (the `loaded_at_query` of the raw sources).

  Returns now() minus one day per NYSE session that closed after the source table's newest load
  (max(received_at)) and whose daily bar is due by the clock (`bar_due_at` of ops.trading_sessions,
  filled by `extract` from datapipe_common.calendar). dbt subtracts that from now(): the "age" is
  exactly the number of such sessions in days, so `warn_after: {count: 0, period: day}` warns as soon
  as one session lacks a newer load, and a weekend, a holiday or a special closure never counts.

  The clock is now(), or the session setting `datapipe.now` when set (tests and backfills pin it:
  PGOPTIONS="-c datapipe.now=2025-01-09T18:00:00-05:00").
-#}
{% macro datapipe_sessions_since_load(source_table) -%}
select now() - interval '1 day' * count(*)
from ops.trading_sessions
where bar_due_at <= coalesce(nullif(current_setting('datapipe.now', true), '')::timestamptz, now())
  and close_at > (select coalesce(max(received_at), '-infinity') from {{ source_table }})
{%- endmacro %}
