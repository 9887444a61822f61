{#-
  One row per symbol per trading day: the bar from the payload received last (then the highest
  payload_id), typed. The union of the staging shards, which build it incrementally and in
  parallel (macros/staging_model.sql, models/staging/daily_prices_shards/).
-#}
{{ config(materialized='view') }}

select * from {{ ref('stg_alphavantage__daily_prices_shard_0') }}
union all
select * from {{ ref('stg_alphavantage__daily_prices_shard_1') }}
