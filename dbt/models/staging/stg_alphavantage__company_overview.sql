{#- One row per symbol with a company overview: the latest OVERVIEW payload that is not `{}` (Alpha
    Vantage's answer for a symbol it has none of: an ETF, a delisted symbol), typed;
    "None"/"-"/"" become NULL. -#}
with

latest as (

    select distinct on (symbol)
        symbol,
        payload,
        payload_id as source_payload_id,
        received_at
    from {{ source('alphavantage', 'company_overview') }}
    where function = 'OVERVIEW'
        and payload <> '{}'::jsonb
    order by symbol, received_at desc, payload_id desc

),

final as (

    select
        symbol,
        {{ datapipe_overview_text('Name') }} as name,
        {{ datapipe_overview_text('Description') }} as description,
        {{ datapipe_overview_text('AssetType') }} as asset_type,
        {{ datapipe_overview_text('Exchange') }} as exchange,
        {{ datapipe_overview_text('Currency') }} as currency,
        {{ datapipe_overview_text('Country') }} as country,
        initcap({{ datapipe_overview_text('Sector') }}) as sector,
        initcap({{ datapipe_overview_text('Industry') }}) as industry,
        {{ datapipe_overview_numeric('MarketCapitalization') }} as market_capitalization,
        {{ datapipe_overview_numeric('PERatio') }} as pe_ratio,
        {{ datapipe_overview_numeric('DividendYield') }} as dividend_yield,
        {{ datapipe_overview_numeric('Beta') }} as beta,
        received_at as updated_at,
        source_payload_id
    from latest

)

select * from final
