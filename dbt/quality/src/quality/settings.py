"""Configuration: read once from the environment (or a dict, in tests) into a frozen object."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "IBM")
MARTS = ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
PG_VARS = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,14}$")


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _ident(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _IDENT.match(value):
        raise ConfigError(f"{name}={value!r} is not a plain lower-case SQL identifier")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name}={raw!r} must be between {lo} and {hi}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    value = _float(env, name, default, lo, hi)
    if value != int(value):
        raise ConfigError(f"{name}={env.get(name)!r} must be a whole number")
    return int(value)


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
    market_close_delay_minutes: int = 60
    lock_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        missing = [v for v in ("PGHOST", "PGDATABASE", "PGUSER") if not env.get(v, "").strip()]
        if missing:
            raise ConfigError(f"warehouse connection not configured: set {', '.join(missing)} (libpq variables)")
        symbols_raw = env.get("DATAPIPE_SYMBOLS", "").strip()
        symbols = (
            tuple(dict.fromkeys(s.strip().upper() for s in symbols_raw.split(",") if s.strip()))
            if symbols_raw
            else DEFAULT_SYMBOLS
        )
        if not symbols:
            raise ConfigError("DATAPIPE_SYMBOLS is set but names no symbol")
        bad = [s for s in symbols if not _SYMBOL.match(s)]
        if bad:
            raise ConfigError(f"DATAPIPE_SYMBOLS: not a ticker symbol: {', '.join(map(repr, bad))}"
                              " (letters, digits, '.' and '-', at most 15 characters)")
        today_raw = env.get("QUALITY_TODAY", "").strip()
        try:
            today = dt.date.fromisoformat(today_raw) if today_raw else None
        except ValueError:
            raise ConfigError(f"QUALITY_TODAY={today_raw!r} is not a YYYY-MM-DD date") from None
        return cls(
            pg={k: env[k] for k in PG_VARS if env.get(k)},
            symbols=symbols,
            audit_schema=_ident(env, "DATAPIPE_AUDIT_SCHEMA", "audit"),
            marts_schema=_ident(env, "DATAPIPE_MARTS_SCHEMA", "marts"),
            dashboard_role=_ident(env, "DASHBOARD_ROLE", "dashboard"),
            data_docs_dir=Path(env.get("QUALITY_DATA_DOCS_DIR", "").strip() or "target/data_docs"),
            row_count_tolerance=_float(env, "QUALITY_ROW_COUNT_TOLERANCE", 0.05, 0.0, 1.0),
            freshness_lag_days=_int(env, "QUALITY_FRESHNESS_LAG_DAYS", 0, 0, 365),
            today=today,
            market_close_delay_minutes=_int(env, "QUALITY_MARKET_CLOSE_DELAY_MINUTES", 60, 0, 24 * 60),
            lock_timeout_s=_float(env, "QUALITY_LOCK_TIMEOUT_S", 60.0, 0.1, 3600.0),
        )

    def conninfo(self) -> str:
        """libpq keyword/value string (psycopg); values quoted."""

        def q(v: str) -> str:
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

        keys = {"PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
                "PGPASSWORD": "password", "PGSSLMODE": "sslmode"}
        return " ".join(f"{keys[k]}={q(v)}" for k, v in self.pg.items())

    def sqlalchemy_url(self) -> str:
        """URL for Great Expectations (SQLAlchemy + psycopg2). Contains the password: never log it."""
        from urllib.parse import quote

        user = quote(self.pg["PGUSER"], safe="")
        password = quote(self.pg.get("PGPASSWORD", ""), safe="")
        auth = f"{user}:{password}" if password else user
        port = self.pg.get("PGPORT", "5432")
        url = f"postgresql+psycopg2://{auth}@{self.pg['PGHOST']}:{port}/{quote(self.pg['PGDATABASE'], safe='')}"
        if self.pg.get("PGSSLMODE"):
            url += f"?sslmode={quote(self.pg['PGSSLMODE'], safe='')}"
        return url
