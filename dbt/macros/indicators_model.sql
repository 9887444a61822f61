{#-
  The indicator model, one shard of the symbols (models/intermediate/indicator_shards/): every
  symbol belongs to exactly one shard for ever (`datapipe_shard_filter`), each shard is its own
  incremental table, and `int_daily_prices__indicators` is the union of the shards. Shards build
  in parallel, one PostgreSQL backend (one core) each: window functions never run in parallel
  workers, so this is how a full build uses more than one core.

  One row per symbol per trading day: prices, daily return, 52-week range and every technical
  indicator, plus the recursion state the next incremental run starts from.

  Incremental and exact. A run looks at the staging bars that arrived since the watermark, finds
  per symbol the first bar whose values changed (or is new), and recomputes from there:
  - recursive indicators (EMA, MACD signal, Wilder RSI) restart from the stored state of the bar
    just before it (`indicator_state`), so they continue exactly where a full run would be; a
    state stored by another version of the recursion stops the run with the upgrade command
    (`datapipe_require_current_indicator_state`, macros/indicators.sql);
  - window values (rolling sums for SMA and Bollinger, 52-week range, previous close) are read
    per recomputed bar from its trailing 252 staging bars through the (symbol, trade_date) index:
    a new day costs one index range per symbol, not a pass over a year of context.
  A full refresh computes the same window values with window functions in one pass. Both feed
  the same final expressions (`derived`, `final`), and every value is exact in both (numeric sums,
  max/min), so an incremental run and a full refresh give identical rows (tested).
-#}
{% macro datapipe_indicators_model(shard, shards) %}
{{
    config(
        materialized='incremental',
        unique_key=['symbol', 'trade_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        tags=['indicator_state'],
        indexes=[
            {'columns': ['symbol', 'trade_date'], 'unique': True},
            {'columns': ['symbol', 'bar_index'], 'unique': True},
            {'columns': ['computed_at']},
        ],
        post_hook=[
            "{{ datapipe_set_watermark(this.identifier, '(select max(source_payload_id) from ' ~ ref('stg_alphavantage__daily_prices_shard_" ~ shard ~ "') ~ ')') }}",
        ],
    )
}}

{#- after the staging view, whose data tests must pass before any indicator is computed -#}
-- depends_on: {{ ref('stg_alphavantage__daily_prices') }}
{%- set block = 252 %}

with

prices as not materialized (

    select
        symbol,
        trade_date,
        open,
        high,
        low,
        close,
        volume,
        source_payload_id
    from {{ ref('stg_alphavantage__daily_prices_shard_' ~ shard) }}

),

{% if is_incremental() %}
{{- datapipe_require_current_indicator_state(this) }}

new_bars as (

    select * from prices
    where source_payload_id > {{ datapipe_watermark(this.identifier) }}

),

changed_symbols as (

    select
        new_bars.symbol,
        min(new_bars.trade_date) as first_changed_date
    from new_bars
    left join {{ this }} as stored
        on stored.symbol = new_bars.symbol
        and stored.trade_date = new_bars.trade_date
    where stored.symbol is null
        or (new_bars.open, new_bars.high, new_bars.low, new_bars.close, new_bars.volume)
            is distinct from (stored.open, stored.high, stored.low, stored.close, stored.volume)
    group by new_bars.symbol

),

anchors as (

    select
        changed_symbols.symbol,
        changed_symbols.first_changed_date,
        coalesce(previous_bar.bar_index + 1, 0) as first_changed_index,
        previous_bar.indicator_state as seed_state
    from changed_symbols
    left join lateral (
        select stored.bar_index, stored.indicator_state
        from {{ this }} as stored
        where stored.symbol = changed_symbols.symbol
            and stored.trade_date < changed_symbols.first_changed_date
        order by stored.trade_date desc
        limit 1
    ) as previous_bar on true

),

recomputed as (

    select
        prices.*,
        anchors.first_changed_index + row_number() over by_day - 1 as bar_index,
        staging.datapipe_indicators(prices.close::double precision, anchors.seed_state)
            over (by_day rows between unbounded preceding and current row) as indicator_state
    from prices
    inner join anchors
        on anchors.symbol = prices.symbol
        and prices.trade_date >= anchors.first_changed_date
    window by_day as (partition by prices.symbol order by prices.trade_date)

),

windowed as (

    -- per recomputed bar, its trailing 252 bars (itself included), newest first
    select
        recomputed.*,
        window_values.previous_close,
        window_values.close_sum_20,
        window_values.close_sq_sum_20,
        window_values.close_sum_50,
        window_values.close_sum_200,
        window_values.high_52w,
        window_values.low_52w
    from recomputed
    cross join lateral (
        select
            max(close) filter (where back = 2) as previous_close,
            sum(close) filter (where back <= 20) as close_sum_20,
            sum(close * close) filter (where back <= 20) as close_sq_sum_20,
            sum(close) filter (where back <= 50) as close_sum_50,
            sum(close) filter (where back <= 200) as close_sum_200,
            max(high) as high_52w,
            min(low) as low_52w
        from (
            select
                history.close,
                history.high,
                history.low,
                row_number() over (order by history.trade_date desc) as back
            from {{ ref('stg_alphavantage__daily_prices_shard_' ~ shard) }} as history
            where history.symbol = recomputed.symbol
                and history.trade_date <= recomputed.trade_date
            order by history.trade_date desc
            limit {{ block }}
        ) as last_bars
    ) as window_values

),

{% else %}

numbered as (

    -- one sort, one pass: every window below shares the partition and order
    select
        prices.*,
        row_number() over by_day - 1 as bar_index,
        lag(close) over by_day as previous_close,
        -- rolling sums in exact numeric (moving-aggregate: O(1) per bar)
        sum(close) over last_20 as close_sum_20,
        sum(close * close) over last_20 as close_sq_sum_20,
        sum(close) over last_50 as close_sum_50,
        sum(close) over last_200 as close_sum_200,
        staging.datapipe_indicators(close::double precision, null::{{ datapipe_indicator_state_type() }})
            over running as indicator_state
    from prices
    window
        by_day as (partition by symbol order by trade_date),
        running as (by_day rows between unbounded preceding and current row),
        last_20 as (by_day rows between 19 preceding and current row),
        last_50 as (by_day rows between 49 preceding and current row),
        last_200 as (by_day rows between 199 preceding and current row)

),

blocks as (

    -- 52-week (252-bar) high/low in O(n): running max/min within 252-bar blocks, forwards and
    -- backwards; a trailing window is the tail of the previous block plus the head of this one.
    select
        numbered.*,
        max(high) over block_forward as high_block_head,
        min(low) over block_forward as low_block_head,
        max(high) over block_backward as high_block_tail,
        min(low) over block_backward as low_block_tail
    from numbered
    window
        block_forward as (
            partition by symbol, bar_index / {{ block }} order by trade_date
            rows between unbounded preceding and current row
        ),
        block_backward as (
            partition by symbol, bar_index / {{ block }} order by trade_date desc
            rows between unbounded preceding and current row
        )

),

windowed as (

    select
        symbol,
        trade_date,
        open,
        high,
        low,
        close,
        volume,
        source_payload_id,
        bar_index,
        indicator_state,
        previous_close,
        close_sum_20,
        close_sq_sum_20,
        close_sum_50,
        close_sum_200,
        case
            when bar_index < {{ block }} or bar_index % {{ block }} = {{ block - 1 }} then high_block_head
            else greatest(high_block_head, lag(high_block_tail, {{ block - 1 }}) over by_day)
        end as high_52w,
        case
            when bar_index < {{ block }} or bar_index % {{ block }} = {{ block - 1 }} then low_block_head
            else least(low_block_head, lag(low_block_tail, {{ block - 1 }}) over by_day)
        end as low_52w
    from blocks
    window by_day as (partition by symbol order by trade_date)

),

{% endif %}

derived as (

    -- each derived value computed once, here (PostgreSQL does not share common subexpressions)
    select
        windowed.*,
        case when bar_index >= 19 then (close_sum_20 / 20)::double precision end as sma_20,
        -- population variance of the last 20 closes, exact in numeric: (n*sum(x^2) - sum(x)^2) / n^2
        case when bar_index >= 19 then
            2 * sqrt(((20 * close_sq_sum_20 - close_sum_20 * close_sum_20) / 400)::double precision)
        end as two_sigma_20,
        -- the recursive indicators: slots of the state, null until defined (macros/indicators.sql)
        (indicator_state).ema_12 as ema_12,
        (indicator_state).ema_26 as ema_26,
        (indicator_state).ema_12 - (indicator_state).ema_26 as macd,
        (indicator_state).macd_signal as macd_signal,
        (indicator_state).avg_gain_14 as avg_gain_14,
        (indicator_state).avg_loss_14 as avg_loss_14
    from windowed

),

final as (

    select
        symbol,
        trade_date,
        bar_index,
        open,
        high,
        low,
        close,
        volume,
        previous_close,
        (close::double precision / nullif(previous_close, 0)::double precision) - 1 as daily_return,
        high_52w,
        low_52w,
        sma_20,
        case when bar_index >= 49 then (close_sum_50 / 50)::double precision end as sma_50,
        case when bar_index >= 199 then (close_sum_200 / 200)::double precision end as sma_200,
        ema_12,
        ema_26,
        macd,
        macd_signal,
        macd - macd_signal as macd_hist,
        -- 100 when the average loss is 0, flat prices included (TA-Lib gives 0 there: docs/transform.md)
        case
            when avg_loss_14 = 0 then 100::double precision
            else 100 - 100 / (1 + avg_gain_14 / avg_loss_14)
        end as rsi_14,
        sma_20 + two_sigma_20 as bb_upper,
        sma_20 as bb_middle,
        sma_20 - two_sigma_20 as bb_lower,
        indicator_state,
        source_payload_id,
        '{{ run_started_at }}'::timestamptz as computed_at
    from derived

)

select * from final
{% endmacro %}


{#- A symbol's shard (the staging and indicator models are sharded alike): the first byte of its md5 (stable across PostgreSQL versions, unlike hashtext). -#}
{% macro datapipe_shard_filter(column, shard, shards) -%}
get_byte(decode(md5({{ column }}), 'hex'), 0) % {{ shards }} = {{ shard }}
{%- endmacro %}
