"""What every datapipe-analytics component must agree on, written once (docs/common.md).

- `datapipe_common.calendar` — the NYSE calendar (exchange_calendars' XNYS): sessions, early
  closes, special closures, the latest completed session at a time; the rows of
  `ops.trading_sessions`, which SQL reads.
- `datapipe_common.symbols` — the symbol rule and the default symbol list.
- `datapipe_common.libpq` — the libpq variables (`PG*`, `PGSSLROOTCERT` included) and their
  connection keywords.
- `datapipe_common.config` — `ConfigError`, number parsing and env files (`export K=V`).
- `datapipe_common.marts` — the indicator columns and the "too many changed rows" threshold.

Every module but `calendar` is stdlib only, so `scripts/` import them without a virtualenv; nothing
here is imported eagerly.
"""
