{#-
  The tracked symbols: DATAPIPE_SYMBOLS (comma-separated, as every component reads it), else the
  var `datapipe_default_symbols` (equal to datapipe_common.symbols.DEFAULT_SYMBOLS, tested). The
  extractor and the gate validate the list with the shared symbol rule; here each symbol is only
  upper-cased and quoted as a SQL literal. The marts cover exactly these symbols.
-#}
{% macro datapipe_tracked_symbols() -%}
    {%- set listed = env_var('DATAPIPE_SYMBOLS', '') | trim or var('datapipe_default_symbols') -%}
    {%- set symbols = [] -%}
    {%- for item in listed.split(',') -%}
        {%- set symbol = item | trim | upper -%}
        {%- if symbol and symbol not in symbols -%}{%- do symbols.append(symbol) -%}{%- endif -%}
    {%- endfor -%}
    {{ return(symbols) }}
{%- endmacro %}

{#- `(values ('AAPL'), ('MSFT'), ...)`: the tracked symbols as rows of one column. -#}
{% macro datapipe_tracked_symbols_values() -%}
(values
{%- for symbol in datapipe_tracked_symbols() %} ('{{ symbol | replace("'", "''") }}'){{ "," if not loop.last }}
{%- endfor %})
{%- endmacro %}

{#-
  Post-hook of the incremental facts: delete the rows of symbols no longer tracked (their raw
  history stays). The symbols present are found by a skip scan of the (symbol, trade_date) index,
  one probe per symbol, not a pass over millions of rows.
-#}
{% macro datapipe_delete_untracked_symbols(relation) -%}
delete from {{ relation }}
where symbol in (
    with recursive present (symbol) as (
        (select symbol from {{ relation }} order by symbol limit 1)
        union all
        select (select later.symbol from {{ relation }} as later where later.symbol > present.symbol
                order by later.symbol limit 1)
        from present
        where present.symbol is not null
    )
    select present.symbol from present
    where present.symbol is not null
        and present.symbol not in (select tracked.symbol from {{ datapipe_tracked_symbols_values() }} as tracked (symbol))
)
{%- endmacro %}

{#-
  The first CTEs of an incremental fact over the tracked symbols (fct_daily_prices,
  fct_technical_indicators): `tracked`, and in an incremental run `arriving`, whose whole history
  the run takes. Both end with a comma, after `with`: the model's own CTEs follow.
-#}
{% macro datapipe_tracked_symbols_ctes() %}
tracked as (

    select symbol from {{ ref('int_tracked_symbols') }}

),

{% if is_incremental() %}
arriving as (

    -- tracked symbols this model has no row of yet: new ones, and ones tracked again
    select tracked.symbol
    from tracked
    where not exists (select from {{ this }} as stored where stored.symbol = tracked.symbol)

),
{% endif %}
{%- endmacro %}
