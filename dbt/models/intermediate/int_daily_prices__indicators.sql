{#-
  One row per symbol per trading day: prices, daily return, 52-week range, every technical
  indicator and the recursion state: the union of the indicator shards, which compute them
  (macros/indicators_model.sql, models/intermediate/indicator_shards/). A view: the facts read
  the rows recomputed since their watermark through each shard's `computed_at` index.
-#}
{{ config(materialized='view') }}

select * from {{ ref('int_daily_prices__indicators_shard_0') }}
union all
select * from {{ ref('int_daily_prices__indicators_shard_1') }}
