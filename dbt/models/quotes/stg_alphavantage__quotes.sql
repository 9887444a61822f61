{#- One row per symbol per bar time: raw.quotes typed, whatever endpoint gave the price. -#}
with

quotes as (

    select * from {{ source('alphavantage_live', 'quotes') }}

),

final as (

    select
        symbol,
        bar_at,
        source,
        delay,
        fetched_at,
        case source
            when 'intraday' then (quote ->> '4. close')::numeric
            when 'bulk' then (quote ->> 'close')::numeric
            else (quote ->> '05. price')::numeric
        end as price_usd,
        case source
            when 'bulk' then (quote ->> 'previous_close')::numeric
            when 'global_quote' then (quote ->> '08. previous close')::numeric
        end as previous_close_usd,
        case source
            when 'intraday' then (quote ->> '5. volume')::bigint
            when 'bulk' then (quote ->> 'volume')::bigint
            else (quote ->> '06. volume')::bigint
        end as volume_shares,
        case delay when 'realtime' then 0 when 'delayed' then 15 end as delay_minutes,
        delay = 'end_of_day' as is_end_of_day
    from quotes

)

select * from final
