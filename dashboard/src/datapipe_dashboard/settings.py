"""Configuration: read once from the environment at the entry point into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from datapipe_common.config import ConfigError, env_int
from datapipe_common.libpq import conninfo, describe, libpq_env

DEFAULT_DAILY_QUOTA = 25
DEFAULT_RETRY_SECONDS = 10
# Every session: a statement is cancelled after 15 s, a lock wait after 5 s. Only `quality publish`
# takes locks readers wait for (its swap, bounded by QUALITY_SWAP_TIMEOUT_S, 2 s by default): a
# lock timeout means "publishing, retry in a moment" (db.Publishing), not an unreachable warehouse.
STATEMENT_TIMEOUT_MS = 15_000
LOCK_TIMEOUT_MS = 5_000


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
        return cls(
            libpq=libpq_env(env),
            daily_quota=env_int(env, "ALPHAVANTAGE_DAILY_QUOTA", DEFAULT_DAILY_QUOTA, minimum=1),
            retry_seconds=env_int(env, "DASHBOARD_RETRY_SECONDS", DEFAULT_RETRY_SECONDS, minimum=1),
            now_override=_parse_now(env.get("DASHBOARD_NOW", "")),
        )

    @property
    def conninfo(self) -> str:
        """libpq connection string; read-only sessions with short timeouts."""
        return conninfo(
            self.libpq,
            connect_timeout="3",
            application_name="datapipe-dashboard",
            options=(f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
                     f" -c lock_timeout={LOCK_TIMEOUT_MS}"),
        )

    @property
    def target(self) -> str:
        """Where the warehouse is, for messages (never the password)."""
        return describe(self.libpq)

    def now(self) -> datetime:
        return self.now_override or datetime.now(UTC)


def _parse_now(raw: str) -> datetime | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        if len(raw) == 10:
            return datetime.combine(date.fromisoformat(raw), time(23, 0), tzinfo=UTC)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"DASHBOARD_NOW={raw!r} is not an ISO date or datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
