{#- One row per symbol: its latest live price, its bar time and delay, and the change against the
    last published daily close (not audited by the daily gate: labelled so on the dashboard). -#}
with

quotes as (

    select * from {{ ref('stg_alphavantage__quotes') }}

),

published_closes as (

    select * from {{ source('published', 'fct_daily_prices') }}

),

latest_quote as (

    select distinct on (symbol) *
    from quotes
    order by symbol, bar_at desc, fetched_at desc

),

last_close as (

    select distinct on (symbol)
        symbol,
        trade_date as last_close_date,
        close as last_close_usd
    from published_closes
    order by symbol, trade_date desc

),

final as (

    select
        latest_quote.symbol,
        latest_quote.price_usd,
        latest_quote.bar_at,
        latest_quote.delay,
        latest_quote.delay_minutes,
        latest_quote.is_end_of_day,
        latest_quote.source,
        latest_quote.fetched_at,
        latest_quote.volume_shares,
        last_close.last_close_date,
        last_close.last_close_usd,
        latest_quote.price_usd - last_close.last_close_usd as change_usd,
        round(100 * (latest_quote.price_usd / nullif(last_close.last_close_usd, 0) - 1), 4) as change_pct
    from latest_quote
    left join last_close on last_close.symbol = latest_quote.symbol

)

select * from final
