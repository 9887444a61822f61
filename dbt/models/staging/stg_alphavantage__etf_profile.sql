{#- One row per symbol Alpha Vantage has an ETF profile of: the latest ETF_PROFILE answer that is not
    `{}`. ETF_PROFILE carries no symbol and no name; numbers are strings ("n/a" or "None" when unknown). -#}
with

latest as (

    select distinct on (symbol)
        symbol,
        payload,
        payload_id as source_payload_id,
        received_at
    from {{ source('alphavantage', 'etf_profile') }}
    where function = 'ETF_PROFILE'
        and payload <> '{}'::jsonb
    order by symbol, received_at desc, payload_id desc

),

final as (

    select
        symbol,
        {{ datapipe_overview_text('name') }} as name,
        {{ datapipe_parse_numeric(datapipe_overview_text('net_assets')) }} as net_assets,
        {{ datapipe_parse_numeric(datapipe_overview_text('net_expense_ratio')) }} as net_expense_ratio,
        {{ datapipe_parse_numeric(datapipe_overview_text('dividend_yield')) }} as dividend_yield,
        {{ datapipe_parse_iso_date(datapipe_overview_text('inception_date')) }} as inception_date,
        received_at as updated_at,
        source_payload_id
    from latest

)

select * from final
