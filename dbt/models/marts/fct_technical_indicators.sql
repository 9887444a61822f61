{#- One row per symbol per trading day: technical indicators (null until enough bars exist).
    Incremental: takes the rows the indicator model recomputed since this model's watermark. -#}
{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': True}],
        post_hook=[
            "{{ datapipe_set_watermark(this.identifier, watermark_at_sql='(select max(computed_at) from ' ~ ref('int_daily_prices__indicators') ~ ')') }}",
        ],
    )
}}

with

indicators as (

    select * from {{ ref('int_daily_prices__indicators') }}
    {% if is_incremental() %}
    where computed_at > {{ datapipe_watermark_at(this.identifier) }}
    {% endif %}

),

final as (

    select
        symbol,
        trade_date,
        sma_20,
        sma_50,
        sma_200,
        ema_12,
        ema_26,
        macd,
        macd_signal,
        macd_hist,
        rsi_14,
        bb_upper,
        bb_middle,
        bb_lower
    from indicators

)

select * from final
