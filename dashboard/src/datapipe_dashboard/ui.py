"""What every page shares: settings, the cached query runner, the friendly error states, the badge."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable
from datetime import date, datetime
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st
from datapipe_common.calendar import nyse
from datapipe_common.config import ConfigError

from datapipe_dashboard import queries
from datapipe_dashboard.db import AccessDenied, Connector, NotPublished, Publishing, WarehouseUnavailable
from datapipe_dashboard.settings import Settings

# Query results are cached this long: short enough that a new publish shows up within a minute.
CACHE_TTL_SECONDS = 60
# Tests (AppTest) put a Settings object here instead of touching os.environ.
SETTINGS_KEY = "datapipe_settings"
BADGE_COLORS = {"fresh": "green", "amber": "orange", "red": "red"}
# Every ASCII punctuation character: CommonMark lets each be backslash-escaped.
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# Where GitHub-flavoured markdown would still make a link of plain text after parsing (URLs with a
# scheme, `www.` hosts, e-mail addresses): an invisible WORD JOINER goes there.
_AUTOLINK = re.compile(r"(?=://)|(?i:(?<=www))(?=\.)|(?=@)")
WORD_JOINER = "\u2060"

Page = Callable[[Settings, queries.Query], None]


@st.cache_resource(show_spinner=False)
def _settings_from_env() -> Settings:
    return Settings.from_env(os.environ)


def current_settings() -> Settings:
    injected = st.session_state.get(SETTINGS_KEY)
    return injected if isinstance(injected, Settings) else _settings_from_env()


@st.cache_resource(show_spinner=False)
def connector(conninfo: str) -> Connector:
    return Connector(conninfo)


@st.cache_data(ttl=CACHE_TTL_SECONDS, show_spinner=False, max_entries=1000)
def _cached_query(conninfo: str, sql: str, params: Any) -> pd.DataFrame:
    return connector(conninfo).query(sql, params)


def runner(settings: Settings) -> queries.Query:
    return partial(_cached_query, settings.conninfo)


def render(page: Page) -> None:
    """Run one page; turn a missing warehouse, missing marts or missing grants into guidance."""
    try:
        settings = current_settings()
    except ConfigError as exc:
        st.error(f"The dashboard is misconfigured: {exc}")
        return
    try:
        page(settings, runner(settings))
        st.session_state.pop("_retry_at", None)  # a later failure counts down from the start again
    except WarehouseUnavailable as exc:
        unavailable(settings, str(exc))
    except Publishing as exc:
        publishing(settings, str(exc))
    except NotPublished as exc:
        empty_state(str(exc))
    except AccessDenied as exc:
        st.error(
            f"The dashboard role `{settings.libpq.get('PGUSER', '?')}` may not read a table it needs ({exc}). "
            "Grant it with `quality grant-reader` (part of `make pipeline`)."
        )


def plain(text: str) -> str:
    """`text` shown literally inside Streamlit markdown, on one line: every ASCII punctuation
    character is backslash-escaped, so user text makes no emphasis, link, image, HTML, heading or
    list, and none of Streamlit's `:colour[...]`, `:emoji:`, `:material/icon:` or `$maths$`; and a
    WORD JOINER (invisible) breaks what the renderer would link after parsing (`http://`, `www.`,
    `name@host`)."""
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(WORD_JOINER, " ".join(text.split())))


def unavailable(settings: Settings, reason: str) -> None:
    st.error(
        f"**The warehouse is not reachable** ({settings.target}). The dashboard retries automatically "
        "and shows the data as soon as it answers.",
        icon=":material/cloud_off:",
    )
    st.caption(f"Last error: {reason}")
    st.markdown(
        "Locally, start it with `make db-up`; on Kubernetes check the warehouse pod "
        "(`kubectl get pods -l app.kubernetes.io/component=warehouse`)."
    )
    retry_countdown(settings, lambda: connector(settings.conninfo).ping())


def publishing(settings: Settings, reason: str) -> None:
    st.warning(
        "**Publishing, retry in a moment.** New data is being swapped into the published marts; "
        "this page reloads by itself.",
        icon=":material/sync:",
    )
    st.caption(f"Detail: {reason}")
    retry_countdown(settings, lambda: True)


def retry_countdown(settings: Settings, ready: Callable[[], bool]) -> None:
    """Count DASHBOARD_RETRY_SECONDS down on the clock; at zero rerun the page if `ready()`, else
    count again. The first rendering never reruns (no loop when the page fails at once again)."""
    st.session_state.setdefault("_retry_at", time.monotonic() + settings.retry_seconds)

    @st.fragment(run_every=1)
    def retry() -> None:
        left = math.ceil(float(st.session_state.get("_retry_at", 0.0)) - time.monotonic())
        if left <= 0:
            st.session_state["_retry_at"] = time.monotonic() + settings.retry_seconds
            if ready():
                st.session_state.pop("_retry_at", None)
                st.rerun(scope="app")
            left = settings.retry_seconds
        st.caption(f":material/autorenew: Retrying in {left} s …")

    retry()


def empty_state(reason: str) -> None:
    st.info("**No published data yet.** The dashboard shows the marts once the pipeline has published them.",
            icon=":material/inbox:")
    st.markdown(
        """
Run the pipeline, then reload this page:

- `make pipeline` — extract, transform, validate and publish into the local warehouse
- `make demo` — everything at once (embedded warehouse, sandbox API, then this dashboard)
- on Kubernetes, trigger the `datapipe` DAG in the Airflow UI
"""
    )
    st.caption(f"Detail: {reason}")


def require_rows(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if frame.empty:
        raise NotPublished(f"{what} has no rows")
    return frame


def overview(q: queries.Query) -> pd.DataFrame:
    return require_rows(queries.market_overview(q), "marts.mart_market_overview")


def as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    stamp: date = pd.Timestamp(value).date()
    return stamp


def freshness(latest: date, now: datetime) -> tuple[str, int, date]:
    """(status, sessions behind, reference): the reference is the latest NYSE session whose bar is
    due at `now` (datapipe_common.calendar: its close, 13:00 on early-close days, plus the data
    delay, as the gate expects); status is fresh (none behind), amber (one) or red."""
    calendar = nyse()
    reference = calendar.latest_completed_session(now)
    behind = calendar.sessions_between(latest, reference)
    return ("fresh" if behind == 0 else "amber" if behind == 1 else "red"), behind, reference


def freshness_badge(latest: date, settings: Settings) -> str:
    """Show the "data as of" badge; returns the status (fresh / amber / red)."""
    status, behind, reference = freshness(latest, settings.now())
    icon = {"fresh": ":material/check_circle:", "amber": ":material/schedule:", "red": ":material/warning:"}[status]
    st.badge(f"Data as of {latest:%Y-%m-%d}", icon=icon, color=BADGE_COLORS[status])  # type: ignore[arg-type]
    if behind == 0:
        note = f"up to date (last completed NYSE session: {reference:%a %Y-%m-%d})"
    else:
        note = (f"{behind} session{'s' if behind > 1 else ''} behind the last completed NYSE session "
                f"({reference:%a %Y-%m-%d})")
    st.caption(note)
    return status


def signed_color(value: Any) -> str:
    """Pandas Styler rule: green for gains, red for losses."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return ""
    if v > 0:
        return "color: #1b873f"
    if v < 0:
        return "color: #d1242f"
    return ""
