"""Configuration: read once from the environment (or a dict, in tests) into a frozen object."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

from datapipe_common.calendar import DATA_DELAY
from datapipe_common.config import ConfigError, env_float, env_int
from datapipe_common.libpq import connection_keywords, conninfo, libpq_env
from datapipe_common.runs import DEFAULT_GRACE_S, grace_s
from datapipe_common.symbols import symbols_from_env

__all__ = ["MARTS", "ConfigError", "Settings"]

MARTS = ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _IDENT.match(value):
        raise ConfigError(f"{name}={value!r} is not a plain lower-case SQL identifier")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the `quality` commands read from the environment."""

    pg: Mapping[str, str]
    symbols: tuple[str, ...]
    audit_schema: str = "audit"
    marts_schema: str = "marts"
    dashboard_role: str = "dashboard"
    data_docs_dir: Path = Path("target/data_docs")
    row_count_tolerance: float = 0.05
    freshness_lag_days: int = 0
    today: dt.date | None = None
    market_close_delay_minutes: int = int(DATA_DELAY.total_seconds() // 60)
    lock_timeout_s: float = 60.0
    # the bound of publish's exclusive window (quality.swap); below the dashboard's 5 s lock timeout
    swap_timeout_s: float = 2.0
    # how long a running gate run may go without a heartbeat before the next gate run aborts it
    run_grace_s: float = DEFAULT_GRACE_S
    # the pipeline run (DATAPIPE_RUN_ID: the Airflow run id, one id per `make pipeline`); publish
    # checks dbt's results of that run; unset: the run of the newest dbt result
    run_id: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        pg = libpq_env(env)
        missing = [v for v in ("PGHOST", "PGDATABASE", "PGUSER") if v not in pg]
        if missing:
            raise ConfigError(f"warehouse connection not configured: set {', '.join(missing)} (libpq variables)")
        today_raw = env.get("QUALITY_TODAY", "").strip()
        try:
            today = dt.date.fromisoformat(today_raw) if today_raw else None
        except ValueError:
            raise ConfigError(f"QUALITY_TODAY={today_raw!r} is not a YYYY-MM-DD date") from None
        lock_timeout_s = env_float(env, "QUALITY_LOCK_TIMEOUT_S", 60.0, minimum=0.1, maximum=3600.0)
        swap_timeout_s = env_float(env, "QUALITY_SWAP_TIMEOUT_S", 2.0, minimum=0.05, maximum=600.0)
        if swap_timeout_s > lock_timeout_s:
            raise ConfigError(f"QUALITY_SWAP_TIMEOUT_S={swap_timeout_s:g} must not exceed"
                              f" QUALITY_LOCK_TIMEOUT_S={lock_timeout_s:g} (the whole time publish tries)")
        return cls(
            pg=pg,
            symbols=symbols_from_env(env),
            audit_schema=_ident(env, "DATAPIPE_AUDIT_SCHEMA", "audit"),
            marts_schema=_ident(env, "DATAPIPE_MARTS_SCHEMA", "marts"),
            dashboard_role=_ident(env, "DASHBOARD_ROLE", "dashboard"),
            data_docs_dir=Path(env.get("QUALITY_DATA_DOCS_DIR", "").strip() or "target/data_docs"),
            row_count_tolerance=env_float(env, "QUALITY_ROW_COUNT_TOLERANCE", 0.05, minimum=0.0, maximum=1.0),
            freshness_lag_days=env_int(env, "QUALITY_FRESHNESS_LAG_DAYS", 0, minimum=0, maximum=365),
            today=today,
            market_close_delay_minutes=env_int(env, "QUALITY_MARKET_CLOSE_DELAY_MINUTES",
                                               cls.market_close_delay_minutes, minimum=0, maximum=24 * 60),
            lock_timeout_s=lock_timeout_s,
            swap_timeout_s=swap_timeout_s,
            run_grace_s=grace_s(env),
            run_id=env.get("DATAPIPE_RUN_ID", "").strip() or None,
        )

    def conninfo(self) -> str:
        """libpq keyword/value string (psycopg). Contains the password: never log it."""
        return conninfo(self.pg)

    def sqlalchemy_url(self) -> str:
        """URL for Great Expectations (SQLAlchemy + psycopg2). Contains the password: never log it."""
        keywords = connection_keywords(self.pg)
        user = quote(keywords["user"], safe="")
        password = quote(keywords.get("password", ""), safe="")
        auth = f"{user}:{password}" if password else user
        host, port, database = keywords["host"], keywords.get("port", "5432"), quote(keywords["dbname"], safe="")
        tls = {k: v for k, v in keywords.items() if k in ("sslmode", "sslrootcert")}
        return f"postgresql+psycopg2://{auth}@{host}:{port}/{database}" + (f"?{urlencode(tls)}" if tls else "")
