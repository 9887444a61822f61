{#-
  The daily-prices staging model, one shard of the symbols (models/staging/daily_prices_shards/,
  same shards as the indicators; `stg_alphavantage__daily_prices` is their union).

  One row per symbol per trading day: the bar from the payload received last (then the highest
  payload_id), typed. Incremental on the raw identity cursor: a run expands only the payloads
  that arrived since the last run, and a (symbol, date) they carry replaces the stored bar when
  the new payload is the later one (corrections of the partial current day).

  A symbol whose history restarted after an accepted hole (ops.history_gaps.restart_on) keeps
  only its bars from the restart on. An incremental run filters the payloads it expands; the bars
  already stored go with the documented full refresh (`DBT_FULL_REFRESH=1 make pipeline`), and
  until then the gate's continuity check refuses the hole.
-#}
{% macro datapipe_daily_prices_staging_model(shard, shards) %}
{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[
            {'columns': ['symbol', 'trade_date'], 'unique': True},
            {'columns': ['source_payload_id']},
        ],
    )
}}

with

payloads as (

    select
        payload_id,
        symbol,
        received_at,
        payload
    from {{ source('alphavantage', 'time_series_daily') }}
    where function = 'TIME_SERIES_DAILY'
        and {{ datapipe_shard_filter('symbol', shard, shards) }}
    {% if is_incremental() %}
        and payload_id > {{ datapipe_query_literal("select coalesce(max(source_payload_id), 0)::text from " ~ this, "0") }}
    {% endif %}

),

restarts as (

    select
        symbol,
        max(restart_on) as restart_on
    from {{ source('ops', 'history_gaps') }}
    where restart_on is not null
    group by symbol

),

bars as (

    select
        payloads.symbol,
        {{ datapipe_parse_iso_date('bar.key') }} as trade_date,
        {{ datapipe_parse_numeric("bar.value ->> '1. open'") }} as open,
        {{ datapipe_parse_numeric("bar.value ->> '2. high'") }} as high,
        {{ datapipe_parse_numeric("bar.value ->> '3. low'") }} as low,
        {{ datapipe_parse_numeric("bar.value ->> '4. close'") }} as close,
        {{ datapipe_parse_bigint("bar.value ->> '5. volume'") }} as volume,
        payloads.payload_id as source_payload_id,
        payloads.received_at
    from payloads
    cross join lateral jsonb_each(payloads.payload -> 'Time Series (Daily)') as bar
    left join restarts
        on restarts.symbol = payloads.symbol
    -- ISO keys compare as dates
    where restarts.restart_on is null or bar.key >= to_char(restarts.restart_on, 'YYYY-MM-DD')

),

candidates as (

    select * from bars
    {% if is_incremental() %}
    union all
    select
        stored.symbol,
        stored.trade_date,
        stored.open,
        stored.high,
        stored.low,
        stored.close,
        stored.volume,
        stored.source_payload_id,
        stored.received_at
    from {{ this }} as stored
    where exists (
        select from bars
        where bars.symbol = stored.symbol and bars.trade_date = stored.trade_date
    )
    {% endif %}

),

ranked as (

    select
        candidates.*,
        row_number() over latest_first as version_rank,
        -- Two payloads received at the same instant that disagree about a bar cannot be ordered
        -- by the "latest received wins" rule: flag it (a data test fails on it).
        coalesce(
            lead(received_at) over latest_first = received_at
            and (lead(open) over latest_first, lead(high) over latest_first, lead(low) over latest_first,
                 lead(close) over latest_first, lead(volume) over latest_first)
                is distinct from (open, high, low, close, volume),
            false
        ) as has_conflicting_duplicate
    from candidates
    window latest_first as (
        partition by symbol, trade_date
        order by received_at desc, source_payload_id desc
    )

),

final as (

    select
        symbol,
        trade_date,
        open,
        high,
        low,
        close,
        volume,
        source_payload_id,
        received_at,
        has_conflicting_duplicate
    from ranked
    where version_rank = 1

)

select * from final
{% endmacro %}
