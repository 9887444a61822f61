"""Live prices during the NYSE session (issue 20): marts.fct_live_quotes and marts.fct_intraday_bars,
published every few minutes by the market_quotes_intraday DAG (premium keys only).

Shown only while the market is open (datapipe_common.calendar: holidays and early closes included),
refreshed in place by a fragment every DASHBOARD_LIVE_REFRESH_SECONDS (no page reload), and always
labelled with the bar time, its delay and "not audited": the daily gate validates the daily marts,
not these. Outside the session nothing live is shown. Before the daily DAG's first publish the live
prices come without a last close or change ("no published close yet").

`block` is the live-prices table the market and portfolio pages share; `fragment` refreshes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
NO_CLOSE = "no published close yet"
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
                                     "change_usd", "change_pct", "bar_label", "label"])
    frame = frame.copy()
    frame["bar_label"] = [label(b, d, m) for b, d, m in zip(frame["bar_at"], frame["delay"], frame["delay_minutes"],
                                                              strict=True)]
    # a price without a last close to compare against (before the daily DAG's first publish) says so
    frame["label"] = frame["bar_label"].where(frame["last_close_usd"].notna(), frame["bar_label"] + f", {NO_CLOSE}")
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
    """One line for a live block: the bar labels (oldest first when they differ) and the refresh period."""
    labels = sorted(set(frame["bar_label"]))
    return f"Live: {'; '.join(labels)} · refreshes every {settings.live_refresh_seconds} s"


# The columns a live table may show, as every page shows them.
COLUMNS: dict[str, Any] = {
    "symbol": st.column_config.TextColumn("Symbol", width="small"),
    "shares": st.column_config.NumberColumn("Shares", format="%.4g"),
    "price_usd": st.column_config.NumberColumn("Live price", format="%.2f"),
    "change_usd": st.column_config.NumberColumn("Change", format="%+.2f"),
    "change_pct": st.column_config.NumberColumn("Change %", format="%+.2f %%"),
    "last_close_usd": st.column_config.NumberColumn("Last close", format="%.2f"),
    "label": st.column_config.TextColumn("As of", help="bar time, delay; live prices are not audited"),
}


def block(settings: Settings, columns: Sequence[str], *, title: str | None = None,
          select: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
          lead: Callable[[pd.DataFrame], None] | None = None, when_none: str | None = WHY_NONE) -> None:
    """A page's live prices during the session (nothing outside it): `title`, then the quotes that
    `select` keeps (all by default) as a table of `columns` (COLUMNS), `lead` drawn above the table,
    and the caption with the labels and the refresh period. No quotes: `when_none` as a caption, or
    nothing at all (not even the title) when it is None."""
    frame = quotes(settings)
    if frame is None:
        return
    shown = frame if select is None else select(frame)
    if shown.empty and when_none is None:
        return
    if title:
        st.subheader(title)
    if shown.empty:
        st.caption(when_none)
        return
    if lead is not None:
        lead(shown)
    st.dataframe(shown[list(columns)], hide_index=True, width="stretch", height=min(38 + 35 * len(shown), 400),
                 column_config={c: COLUMNS[c] for c in columns})
    st.caption(caption(shown, settings))
