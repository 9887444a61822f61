{#- One row per symbol per intraday bar of its newest session: the bars of the latest
    TIME_SERIES_INTRADAY payload per symbol (bars keyed by their start, US/Eastern). -#}
with

latest as (

    select distinct on (symbol)
        symbol,
        payload
    from {{ source('alphavantage_live', 'time_series_intraday') }}
    order by symbol, received_at desc, payload_id desc

),

bars as (

    select
        latest.symbol,
        bar.key as bar_time,
        bar.value as bar
    from latest
    cross join lateral jsonb_each(latest.payload) as series (key, value)
    cross join lateral jsonb_each(series.value) as bar (key, value)
    where series.key like 'Time Series (%'

),

final as (

    select
        symbol,
        (bar_time::timestamp at time zone 'America/New_York') as bar_at,
        (bar ->> '1. open')::numeric as open_usd,
        (bar ->> '2. high')::numeric as high_usd,
        (bar ->> '3. low')::numeric as low_usd,
        (bar ->> '4. close')::numeric as close_usd,
        (bar ->> '5. volume')::bigint as volume_shares
    from bars

)

select * from final
