"""
### market_quotes_intraday — live prices during the NYSE session, for premium keys

Every few minutes while the market is open (NYSE sessions only, early closes respected, from the shared
calendar), `extract_quotes` stores the tracked symbols' live prices in `raw.quotes` (the newest intraday
bar, or bulk quotes), and `publish_quotes` builds the quotes models (`dbt build --select tag:quotes`:
staging, the latest price per symbol, their tests) and publishes them: two pods a run. The daily DAG's
marts and their write-audit-publish are untouched; a failing quotes test never blocks them.

**Off for free keys** (`DATAPIPE_API_TIER=free`, the default): a free key has 25 requests a day, which
`market_data_daily` needs, and its quotes are end-of-day anyway. For a premium key the interval is the
shortest that stays within the key's requests per minute and daily budget (the planner in
`datapipe_common.intraday`; the chosen interval is logged at parse time and by `check_poll_time`).
No catch-up, one run at a time, a run times out after one interval. Configuration: docs/airflow.md.
"""

from __future__ import annotations

import os

from datapipe_dags.config import Settings
from datapipe_dags.quotes import build_market_quotes_intraday

# The entry point: the environment is read here, once.
dag = build_market_quotes_intraday(Settings.from_env(os.environ), doc_md=__doc__)
