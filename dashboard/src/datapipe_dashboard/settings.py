"""Configuration: read once from the environment at the entry point into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from psycopg.conninfo import make_conninfo

# libpq variable -> psycopg connection keyword. Nothing else configures the warehouse connection.
LIBPQ_VARIABLES = {
    "PGHOST": "host",
    "PGPORT": "port",
    "PGDATABASE": "dbname",
    "PGUSER": "user",
    "PGPASSWORD": "password",
    "PGSSLMODE": "sslmode",
}
DEFAULT_DAILY_QUOTA = 25
DEFAULT_RETRY_SECONDS = 10


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the app needs; built by `from_env` (the app) or directly (tests)."""

    libpq: Mapping[str, str] = field(default_factory=dict)
    daily_quota: int = DEFAULT_DAILY_QUOTA
    retry_seconds: int = DEFAULT_RETRY_SECONDS
    # Fixed "now" for demos and tests (DASHBOARD_NOW); None means the real clock.
    now_override: datetime | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        libpq = {key: env[key] for key in LIBPQ_VARIABLES if env.get(key)}
        return cls(
            libpq=libpq,
            daily_quota=_positive_int(env, "ALPHAVANTAGE_DAILY_QUOTA", DEFAULT_DAILY_QUOTA),
            retry_seconds=_positive_int(env, "DASHBOARD_RETRY_SECONDS", DEFAULT_RETRY_SECONDS),
            now_override=_parse_now(env.get("DASHBOARD_NOW", "")),
        )

    @property
    def conninfo(self) -> str:
        """libpq connection string; read-only sessions with short timeouts."""
        params = {LIBPQ_VARIABLES[k]: v for k, v in self.libpq.items()}
        return make_conninfo(
            "",
            **params,
            connect_timeout="3",
            application_name="datapipe-dashboard",
            options="-c default_transaction_read_only=on -c statement_timeout=15000",
        )

    @property
    def target(self) -> str:
        """Where the warehouse is, for messages (never the password)."""
        host = self.libpq.get("PGHOST", "localhost")
        port = self.libpq.get("PGPORT", "5432")
        return f"{self.libpq.get('PGUSER', '?')}@{host}:{port}/{self.libpq.get('PGDATABASE', '?')}"

    def now(self) -> datetime:
        return self.now_override or datetime.now(UTC)


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be greater than 0")
    return value


def _parse_now(raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(23, 0), tzinfo=UTC)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"DASHBOARD_NOW={raw!r} is not an ISO date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
