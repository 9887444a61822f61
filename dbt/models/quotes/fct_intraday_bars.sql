{#- One row per symbol per intraday bar of its newest session (the symbol page's line). -#}
with

bars as (

    select * from {{ ref('stg_alphavantage__intraday_bars') }}

),

final as (

    select
        symbol,
        bar_at,
        (bar_at at time zone 'America/New_York')::date as session_date,
        open_usd,
        high_usd,
        low_usd,
        close_usd,
        volume_shares
    from bars

)

select * from final
