{#- One row per tracked symbol (DATAPIPE_SYMBOLS, macros/tracked_symbols.sql): the marts cover these. -#}
{{ config(materialized='view') }}

select tracked.symbol
from {{ datapipe_tracked_symbols_values() }} as tracked (symbol)
