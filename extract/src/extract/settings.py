"""Configuration: read once from the environment (or a dict, in tests) into a frozen object."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from datapipe_common.calendar import NEW_YORK
from datapipe_common.config import ConfigError, env_float, env_int
from datapipe_common.libpq import libpq_env
from datapipe_common.masking import mask_url, url_secrets
from datapipe_common.runs import DEFAULT_GRACE_S, grace_s
from datapipe_common.symbols import DEFAULT_SYMBOLS, symbols_from_env

from extract.protocol import INTERVALS

REAL_BASE_URL = "https://www.alphavantage.co/query"


@dataclass(frozen=True)
class Settings:
    api_key: str | None = field(repr=False)
    base_url: str = REAL_BASE_URL
    requests_per_minute: float = 5.0
    timeout_s: float = 30.0
    max_retries: int = 4
    backoff_s: float = 2.0
    backoff_max_s: float = 60.0
    throttle_wait_s: float = 15.0
    workers: int = 4
    parse_processes: int = 0
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    log_level: str = "INFO"
    # how long a `running` run row may go without a heartbeat before a new run aborts it
    run_grace_s: float = DEFAULT_GRACE_S
    # the clock of the history planner (extract.history); None = the real clock. EXTRACT_NOW pins it.
    now: dt.datetime | None = None
    # `extract quotes` (extract.quotes): the premium entitlement (None: end-of-day data, what free keys
    # get), whether the key may ask REALTIME_BULK_QUOTES, and the intraday bar interval
    entitlement: str | None = None
    bulk_quotes: bool = False
    intraday_interval: str = "5min"
    # raw.time_series_intraday keeps every poll's whole-session payload: `extract quotes` deletes those
    # received more than this many days ago (0 = keep everything); raw.quotes keeps every price
    intraday_retention_days: int = 7
    # the pipeline run this invocation belongs to (DATAPIPE_RUN_ID: the Airflow run id, one id per
    # `make pipeline`), stored with the run row for ops.pipeline_runs; None when run by hand
    pipeline_run_id: str | None = None
    # the libpq variables (datapipe_common.libpq), nothing else configures the warehouse
    pg_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def clock(self) -> dt.datetime:
        return self.now or dt.datetime.now(dt.UTC)

    @property
    def is_real_api(self) -> bool:
        return self.base_url.rstrip("/") == REAL_BASE_URL

    @property
    def public_base_url(self) -> str:
        """The base URL as printed and stored: userinfo and secret query values masked."""
        return mask_url(self.base_url)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What every message is masked against: the key and the credentials inside the base URL."""
        return tuple(s for s in (self.api_key, *url_secrets(self.base_url)) if s)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        key = env.get("ALPHAVANTAGE_API_KEY", "").strip() or None
        base_url = env.get("ALPHAVANTAGE_BASE_URL", "").strip() or REAL_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"ALPHAVANTAGE_BASE_URL={mask_url(base_url)!r} must start with http:// or https://")
        if key is None and base_url.rstrip("/") == REAL_BASE_URL:
            raise ConfigError(
                "ALPHAVANTAGE_API_KEY is not set. The real Alpha Vantage API needs a key "
                "(free at https://www.alphavantage.co/support/#api-key); or point ALPHAVANTAGE_BASE_URL "
                "at the sandbox API (`make sandbox-up` writes .local/sandbox.env)."
            )
        now_raw = env.get("EXTRACT_NOW", "").strip()
        try:
            now = dt.datetime.fromisoformat(now_raw).replace(tzinfo=NEW_YORK) if now_raw else None
        except ValueError:
            raise ConfigError(f"EXTRACT_NOW={now_raw!r} is not a YYYY-MM-DDTHH:MM time (New York)") from None
        entitlement = env.get("ALPHAVANTAGE_ENTITLEMENT", "").strip().lower() or None
        if entitlement not in (None, "realtime", "delayed"):
            raise ConfigError(f"ALPHAVANTAGE_ENTITLEMENT={entitlement!r}: use realtime or delayed (premium keys),"
                              " or leave it unset (end-of-day quotes, what free keys get)")
        bulk = env.get("ALPHAVANTAGE_BULK_QUOTES", "").strip().lower()
        if bulk not in ("", "0", "1", "true", "false", "yes", "no"):
            raise ConfigError(f"ALPHAVANTAGE_BULK_QUOTES={bulk!r}: use true or false")
        interval = env.get("EXTRACT_INTRADAY_INTERVAL", "").strip() or "5min"
        if interval not in INTERVALS:
            raise ConfigError(f"EXTRACT_INTRADAY_INTERVAL={interval!r}: use one of {', '.join(INTERVALS)}")
        workers = env_int(env, "EXTRACT_WORKERS", 4, minimum=1)
        cpus = os.cpu_count() or 1
        default_parsers = min(workers, cpus) if cpus > 1 else 0
        return cls(
            api_key=key,
            base_url=base_url,
            requests_per_minute=env_float(env, "ALPHAVANTAGE_REQUESTS_PER_MINUTE", 5.0, minimum=0),
            timeout_s=env_float(env, "ALPHAVANTAGE_TIMEOUT_S", 30.0, minimum=0.001),
            max_retries=env_int(env, "ALPHAVANTAGE_MAX_RETRIES", 4, minimum=0),
            backoff_s=env_float(env, "ALPHAVANTAGE_BACKOFF_S", 2.0, minimum=0),
            backoff_max_s=env_float(env, "ALPHAVANTAGE_BACKOFF_MAX_S", 60.0, minimum=0),
            throttle_wait_s=env_float(env, "ALPHAVANTAGE_THROTTLE_WAIT_S", 15.0, minimum=0),
            workers=workers,
            parse_processes=env_int(env, "EXTRACT_PARSE_PROCESSES", default_parsers, minimum=0),
            symbols=symbols_from_env(env),
            log_level=env.get("EXTRACT_LOG_LEVEL", "INFO").strip() or "INFO",
            run_grace_s=grace_s(env),
            now=now,
            entitlement=entitlement,
            bulk_quotes=bulk in ("1", "true", "yes"),
            intraday_interval=interval,
            intraday_retention_days=env_int(env, "EXTRACT_INTRADAY_RETENTION_DAYS", 7, minimum=0),
            pipeline_run_id=env.get("DATAPIPE_RUN_ID", "").strip() or None,
            pg_env=libpq_env(env),
        )
