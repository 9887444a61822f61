{#- One row per symbol per trading day: technical indicators (null until enough bars exist).
    Incremental: takes the rows the indicator model recomputed since this model's watermark, and the whole
    history of a tracked symbol it has no row of (new, or tracked again). Tracked symbols only
    (DATAPIPE_SYMBOLS): the rows of a symbol no longer tracked are deleted (its raw history stays). -#}
{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['symbol', 'trade_date'], 'unique': True}],
        post_hook=[
            "{{ datapipe_delete_untracked_symbols(this) }}",
            "{{ datapipe_set_watermark(this.identifier, watermark_at_sql='(select max(computed_at) from ' ~ ref('int_daily_prices__indicators') ~ ')') }}",
        ],
    )
}}

with

{{ datapipe_tracked_symbols_ctes() }}

indicators as (

    select * from {{ ref('int_daily_prices__indicators') }}
    where symbol in (select tracked.symbol from tracked)
    {% if is_incremental() %}
        and (
            computed_at > {{ datapipe_watermark_at(this.identifier) }}
            or symbol in (select arriving.symbol from arriving)
        )
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
