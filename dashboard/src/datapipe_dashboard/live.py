"""Live prices during the NYSE session (issue 20): marts.fct_live_quotes and marts.fct_intraday_bars,
published every few minutes by the market_quotes_intraday DAG (premium keys only).

Shown only while the market is open (datapipe_common.calendar: holidays and early closes included),
refreshed in place by a fragment every DASHBOARD_LIVE_REFRESH_SECONDS (no page reload), and always
labelled with the bar time, its delay and "not audited": the daily gate validates the daily marts,
not these. Outside the session nothing live is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import partial
from typing import Any

import pandas as pd
import streamlit as st
from datapipe_common.calendar import NEW_YORK, nyse

from datapipe_dashboard import queries
from datapipe_dashboard.db import NotPublished
from datapipe_dashboard.settings import Settings
from datapipe_dashboard.ui import connector

# Live queries are cached this briefly (shared by every session): a refresh sees a new publish at once.
LIVE_CACHE_TTL_SECONDS = 5
WHY_NONE = ("No live prices for this session. Live prices come from the `market_quotes_intraday` DAG, which is"
            " off for free Alpha Vantage keys (their 25 requests a day are the daily pipeline's; docs/airflow.md).")


@st.cache_data(ttl=LIVE_CACHE_TTL_SECONDS, show_spinner=False, max_entries=200)
def _live_query(conninfo: str, sql: str, params: Any) -> pd.DataFrame:
    return connector(conninfo).query(sql, params)


def runner(settings: Settings) -> queries.Query:
    return partial(_live_query, settings.conninfo)


def open_session(now: datetime) -> tuple[date, datetime] | None:
    """(today, its open) while the NYSE is open at `now`, else None."""
    calendar = nyse()
    if not calendar.is_open(now):
        return None
    today = now.astimezone(NEW_YORK).date()
    return today, calendar.session(today).open_at


def label(bar_at: Any, delay: str, delay_minutes: Any) -> str:
    """ "14:35 ET, delayed 15 min, not audited" """
    stamp = pd.Timestamp(bar_at).tz_convert(NEW_YORK) if pd.Timestamp(bar_at).tzinfo else pd.Timestamp(bar_at)
    how = {"realtime": "real time", "end_of_day": "end of day"}.get(delay, f"delayed {int(delay_minutes or 15)} min")
    return f"{stamp:%H:%M} ET, {how}, not audited"


def quotes(settings: Settings) -> pd.DataFrame | None:
    """Today's live quotes (one row per symbol, with `label`) during the session; None outside it.
    An empty frame: the session is open but nothing live was published for it."""
    session = open_session(settings.now())
    if session is None:
        return None
    try:
        frame = queries.live_quotes(runner(settings), session[1])
    except NotPublished:  # the quotes DAG never published: like a session without quotes
        return pd.DataFrame(columns=["symbol", "price_usd", "bar_at", "delay", "delay_minutes", "last_close_usd",
                                     "change_usd", "change_pct", "label"])
    frame = frame.copy()
    frame["label"] = [label(b, d, m) for b, d, m in zip(frame["bar_at"], frame["delay"], frame["delay_minutes"],
                                                          strict=True)]
    return frame


def intraday(settings: Settings, symbol: str) -> pd.DataFrame:
    """Today's intraday bars of `symbol` during the session (empty otherwise)."""
    session = open_session(settings.now())
    if session is None:
        return pd.DataFrame()
    try:
        return queries.intraday_bars(runner(settings), symbol, session[0])
    except NotPublished:
        return pd.DataFrame()


def fragment(settings: Settings, body: Callable[[], None]) -> None:
    """Run `body` now and again every DASHBOARD_LIVE_REFRESH_SECONDS, in place, during the session
    only (outside it nothing is drawn and nothing refreshes)."""
    if open_session(settings.now()) is None:
        return
    st.fragment(run_every=settings.live_refresh_seconds)(body)()


def caption(frame: pd.DataFrame, settings: Settings) -> str:
    """One line for a live block: the labels (oldest first when they differ) and the refresh period."""
    labels = sorted(set(frame["label"]))
    return f"Live: {'; '.join(labels)} · refreshes every {settings.live_refresh_seconds} s"
