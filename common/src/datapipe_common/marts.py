"""What the Python components and the dbt project agree on about the published marts.

SQL cannot import Python: `dbt/dbt_project.yml` repeats `MAX_CHANGED_FRACTION` as the var
`datapipe_max_changed_fraction`, and the dbt models define `INDICATOR_COLUMNS`; tests/common
checks both against these values, so a change here that dbt does not follow fails the tests.

Stdlib only.
"""

from __future__ import annotations

# The indicator columns of fct_technical_indicators (and of the symbol page), in display order.
INDICATOR_COLUMNS = (
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist",
    "rsi_14", "bb_upper", "bb_middle", "bb_lower",
)

# Incremental checking and publishing (dbt tests, the gate, publish) scope their work to the fact
# rows changed since the last publish only while those are at most this fraction of the table;
# above it, whole tables are cheaper.
MAX_CHANGED_FRACTION = 0.25
DBT_VAR_MAX_CHANGED_FRACTION = "datapipe_max_changed_fraction"
