{#- One row per symbol with prices: the latest bar, its change versus the previous close, the
    52-week range and the latest indicators, with the company's name and sector. -#}
with

companies as (

    select * from {{ ref('dim_company') }}

),

latest_prices as (

    select
        companies.symbol,
        latest.trade_date,
        latest.close,
        latest.volume,
        latest.high_52w,
        latest.low_52w,
        latest.daily_return,
        (
            select previous.close
            from {{ ref('fct_daily_prices') }} as previous
            where previous.symbol = companies.symbol and previous.trade_date < latest.trade_date
            order by previous.trade_date desc
            limit 1
        ) as previous_close
    from companies
    cross join lateral (
        select prices.*
        from {{ ref('fct_daily_prices') }} as prices
        where prices.symbol = companies.symbol
        order by prices.trade_date desc
        limit 1
    ) as latest

),

indicators as (

    select * from {{ ref('fct_technical_indicators') }}

),

final as (

    select
        latest_prices.symbol,
        companies.name,
        companies.sector,
        companies.industry,
        latest_prices.trade_date,
        latest_prices.close,
        latest_prices.previous_close,
        latest_prices.close - latest_prices.previous_close as day_change,
        round((100 * (latest_prices.close / nullif(latest_prices.previous_close, 0) - 1))::numeric, 4)
            as day_change_pct,
        latest_prices.volume,
        latest_prices.high_52w,
        latest_prices.low_52w,
        indicators.sma_20,
        indicators.sma_50,
        indicators.sma_200,
        indicators.ema_12,
        indicators.ema_26,
        indicators.macd,
        indicators.macd_signal,
        indicators.macd_hist,
        indicators.rsi_14,
        indicators.bb_upper,
        indicators.bb_middle,
        indicators.bb_lower
    from latest_prices
    inner join companies
        on companies.symbol = latest_prices.symbol
    left join indicators
        on indicators.symbol = latest_prices.symbol
        and indicators.trade_date = latest_prices.trade_date

)

select * from final
