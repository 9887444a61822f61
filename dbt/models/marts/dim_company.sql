{#- One row per tracked symbol with prices or a profile: the company as its latest OVERVIEW describes
    it; an ETF (no overview) from its ETF_PROFILE; a symbol with neither (delisted, unknown to Alpha
    Vantage's fundamentals) by its symbol, marked "no company profile". Never a reason to block the
    symbol's prices (the facts' relationships to this model always hold). -#}
with

tracked as (

    select symbol from {{ ref('int_tracked_symbols') }}

),

companies as (

    select * from {{ ref('stg_alphavantage__company_overview') }}

),

funds as (

    select * from {{ ref('stg_alphavantage__etf_profile') }}

),

known as (

    -- one index probe per tracked symbol into the daily prices
    select tracked.symbol
    from tracked
    where tracked.symbol in (select companies.symbol from companies)
        or tracked.symbol in (select funds.symbol from funds)
        or exists (
            select from {{ ref('stg_alphavantage__daily_prices') }} as prices
            where prices.symbol = tracked.symbol
        )

),

final as (

    select
        known.symbol,
        coalesce(companies.name, funds.name, known.symbol) as name,
        case
            when companies.symbol is not null then companies.description
            when funds.symbol is not null
                then 'Exchange-traded fund' || coalesce(', since ' || funds.inception_date, '')
                    || coalesce(', net expense ratio ' || funds.net_expense_ratio, '')
                    || ' (Alpha Vantage has an ETF profile, no company overview).'
            else 'No company profile: Alpha Vantage has no overview of this symbol.'
        end as description,
        coalesce(companies.asset_type, case when funds.symbol is not null then 'ETF' end) as asset_type,
        companies.exchange,
        companies.currency,
        companies.country,
        companies.sector,
        companies.industry,
        coalesce(companies.market_capitalization, funds.net_assets) as market_capitalization,
        companies.pe_ratio,
        coalesce(companies.dividend_yield, funds.dividend_yield) as dividend_yield,
        companies.beta,
        coalesce(companies.updated_at, funds.updated_at) as updated_at,
        case
            when companies.symbol is not null then 'company overview'
            when funds.symbol is not null then 'ETF profile'
            else 'no company profile'
        end as profile_source
    from known
    left join companies
        on companies.symbol = known.symbol
    left join funds
        on funds.symbol = known.symbol

)

select * from final
