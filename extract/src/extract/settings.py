"""Configuration: read once from the environment (or a dict, in tests) into a frozen object."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from extract.errors import ConfigError

REAL_BASE_URL = "https://www.alphavantage.co/query"
DEFAULT_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "IBM")
SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,19}$")


def parse_symbols(text: str) -> tuple[str, ...]:
    """`AAPL, msft,IBM` -> ('AAPL', 'MSFT', 'IBM'); duplicates dropped, order kept; bad names refused."""
    out: list[str] = []
    for raw in text.split(","):
        sym = raw.strip().upper()
        if not sym:
            continue
        if not SYMBOL_RE.match(sym):
            raise ConfigError(f"invalid symbol {raw.strip()!r}: expected letters/digits with an optional .SUFFIX")
        if sym not in out:
            out.append(sym)
    if not out:
        raise ConfigError("no symbols given")
    return tuple(out)


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


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
    # libpq variables only (PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE); psycopg reads them.
    pg_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_real_api(self) -> bool:
        return self.base_url.rstrip("/") == REAL_BASE_URL

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        key = env.get("ALPHAVANTAGE_API_KEY", "").strip() or None
        base_url = env.get("ALPHAVANTAGE_BASE_URL", "").strip() or REAL_BASE_URL
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"ALPHAVANTAGE_BASE_URL={base_url!r} must start with http:// or https://")
        if key is None and base_url.rstrip("/") == REAL_BASE_URL:
            raise ConfigError(
                "ALPHAVANTAGE_API_KEY is not set. The real Alpha Vantage API needs a key "
                "(free at https://www.alphavantage.co/support/#api-key); or point ALPHAVANTAGE_BASE_URL "
                "at the sandbox API (`make sandbox-up` writes .local/sandbox.env)."
            )
        symbols_raw = env.get("DATAPIPE_SYMBOLS", "").strip()
        workers = _int(env, "EXTRACT_WORKERS", 4, minimum=1)
        cpus = os.cpu_count() or 1
        default_parsers = min(workers, cpus) if cpus > 1 else 0
        return cls(
            api_key=key,
            base_url=base_url,
            requests_per_minute=_number(env, "ALPHAVANTAGE_REQUESTS_PER_MINUTE", 5.0),
            timeout_s=_number(env, "ALPHAVANTAGE_TIMEOUT_S", 30.0, minimum=0.001),
            max_retries=_int(env, "ALPHAVANTAGE_MAX_RETRIES", 4),
            backoff_s=_number(env, "ALPHAVANTAGE_BACKOFF_S", 2.0),
            backoff_max_s=_number(env, "ALPHAVANTAGE_BACKOFF_MAX_S", 60.0),
            throttle_wait_s=_number(env, "ALPHAVANTAGE_THROTTLE_WAIT_S", 15.0),
            workers=workers,
            parse_processes=_int(env, "EXTRACT_PARSE_PROCESSES", default_parsers, minimum=0),
            symbols=parse_symbols(symbols_raw) if symbols_raw else DEFAULT_SYMBOLS,
            log_level=env.get("EXTRACT_LOG_LEVEL", "INFO").strip() or "INFO",
            pg_env={
                k: env[k] for k in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSSLMODE") if k in env
            },
        )
