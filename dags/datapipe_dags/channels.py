"""Where alerts go: the channels read from the environment, leniently.

Standard library only, and `Channels.from_env` never raises: the health DAG (datapipe_health.py)
must import and alert even when the pipeline's configuration is broken. `config.Settings` refuses the
same invalid values at parse time (an import error naming the variable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

_CONN_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")


def check_conn_id(var: str, value: str) -> str | None:
    """The problem with an Airflow connection id, or None."""
    return None if _CONN_ID.match(value) else f"{var}={value!r} is not a valid Airflow connection id"


@dataclass(frozen=True)
class Channels:
    """Where alerts go (docs/airflow.md, Alerts). A channel is on only when configured."""

    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    smtp_conn_id: str = "smtp_default"
    slack_conn_id: str | None = None
    airflow_base_url: str = "http://localhost:8080"

    @property
    def enabled(self) -> bool:
        return bool(self.email_to or self.slack_conn_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> tuple[Channels, list[str]]:
        """The channels configured in `env`, and the problems found (each names its variable).
        Never raises: an invalid value is left out, so the valid channels still work."""
        problems: list[str] = []
        base_url = (env.get("DATAPIPE_AIRFLOW_BASE_URL", "").strip() or cls.airflow_base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            problems.append(f"DATAPIPE_AIRFLOW_BASE_URL={base_url!r} must start with http:// or https://")
            base_url = cls.airflow_base_url
        emails = tuple(e.strip() for e in env.get("DATAPIPE_ALERT_EMAIL_TO", "").split(",") if e.strip())
        bad = [e for e in emails if "@" not in e or any(c.isspace() for c in e)]
        if bad:
            problems.append(f"DATAPIPE_ALERT_EMAIL_TO has invalid addresses: {bad}")
            emails = tuple(e for e in emails if e not in bad)
        smtp = env.get("DATAPIPE_SMTP_CONN_ID", "").strip() or cls.smtp_conn_id
        if problem := check_conn_id("DATAPIPE_SMTP_CONN_ID", smtp):
            problems.append(problem)
            smtp = cls.smtp_conn_id
        slack = env.get("DATAPIPE_SLACK_CONN_ID", "").strip() or None
        if slack and (problem := check_conn_id("DATAPIPE_SLACK_CONN_ID", slack)):
            problems.append(problem)
            slack = None
        channels = cls(email_to=emails, email_from=env.get("DATAPIPE_ALERT_EMAIL_FROM", "").strip() or None,
                       smtp_conn_id=smtp, slack_conn_id=slack, airflow_base_url=base_url)
        return channels, problems
