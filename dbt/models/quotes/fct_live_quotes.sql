{#- One row per symbol: its latest live price, its bar time and delay, and the change against the
    last published daily close before the price's session (not audited by the daily gate: labelled so
    on the dashboard). Before the daily DAG's first publish there is no close to compare against: the
    price is published with last_close_* and change_* empty. -#}
with

quotes as (

    select * from {{ ref('stg_alphavantage__quotes') }}

),

published_closes as (

    {{ datapipe_relation_or_empty(source('published', 'fct_daily_prices'),
                                  {'symbol': 'text', 'trade_date': 'date', 'close': 'numeric'}) }}

),

latest_quote as (

    select distinct on (symbol) *
    from quotes
    order by symbol, bar_at desc, fetched_at desc

),

last_close as (

    {#- the last published close before the quote's session: the change is the session's so far -#}
    select distinct on (latest_quote.symbol)
        latest_quote.symbol,
        published_closes.trade_date as last_close_date,
        published_closes.close as last_close_usd
    from latest_quote
    inner join published_closes
        on
            published_closes.symbol = latest_quote.symbol
            and published_closes.trade_date < (latest_quote.bar_at at time zone 'America/New_York')::date
    order by latest_quote.symbol asc, published_closes.trade_date desc

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
