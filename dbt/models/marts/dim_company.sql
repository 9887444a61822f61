{#- One row per symbol: the company as described by its latest OVERVIEW. -#}
with

companies as (

    select * from {{ ref('stg_alphavantage__company_overview') }}

),

final as (

    select
        symbol,
        name,
        description,
        asset_type,
        exchange,
        currency,
        country,
        sector,
        industry,
        market_capitalization,
        pe_ratio,
        dividend_yield,
        beta,
        updated_at
    from companies

)

select * from final
