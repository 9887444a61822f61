"""Data quality: freshness per symbol, API usage vs quota, pipeline runs (ops.pipeline_runs, what an
external monitor reads too), extraction runs, last gate, publish history, the symbols published
without a company profile."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pandas as pd
import streamlit as st

from datapipe_dashboard import queries
from datapipe_dashboard.db import NotPublished
from datapipe_dashboard.settings import Settings
from datapipe_dashboard.ui import as_date, freshness, freshness_badge, overview, render

STATUS_LABELS = {"succeeded": "succeeded", "failed": "FAILED", "running": "running…",
                 "unchanged": "unchanged", "skipped": "skipped", "no_data": "no data"}


def utc_day(now: datetime) -> tuple[datetime, datetime]:
    """The API quota day: midnight to midnight UTC."""
    start = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def freshness_table(ov: pd.DataFrame, extracts: pd.DataFrame, now: datetime) -> pd.DataFrame:
    rows = []
    for symbol, trade_date in zip(ov["symbol"], ov["trade_date"], strict=True):
        status, behind, _ = freshness(as_date(trade_date), now)
        rows.append({"symbol": symbol, "last_trade_date": as_date(trade_date), "trading_days_behind": behind,
                     "status": {"fresh": "fresh", "amber": "1 day behind", "red": "STALE"}[status]})
    frame = pd.DataFrame(rows)
    if not extracts.empty:
        frame = frame.merge(extracts, on="symbol", how="left")
    return frame.sort_values(["trading_days_behind", "symbol"], ascending=[False, True])


def page(settings: Settings, q: queries.Query) -> None:
    st.title("Data quality")
    now = settings.now()
    ov = overview(q)
    latest = as_date(ov["trade_date"].max())
    freshness_badge(latest, settings)

    section("Pipeline runs", lambda: pipeline_runs(q))

    usage, runs_col = st.columns([2, 3])
    with usage:
        api_usage(settings, q, now)
    with runs_col:
        section("Recent extraction runs", lambda: recent_runs(q))

    gate, publish = st.columns([3, 2])
    with gate:
        section("Last quality gate", lambda: last_gate(q))
    with publish:
        section("Publish history", lambda: publish_history(q))

    section("Symbols without a company profile", lambda: without_profile(q))

    st.subheader("Freshness per symbol")
    try:
        extracts = queries.last_extract_per_symbol(q)
    except NotPublished:
        extracts = pd.DataFrame()
    table = freshness_table(ov, extracts, now)
    st.dataframe(
        table, hide_index=True, width="stretch",
        column_config={
            "symbol": "Symbol",
            "last_trade_date": st.column_config.DateColumn("Last trade date"),
            "trading_days_behind": st.column_config.NumberColumn("Trading days behind"),
            "status": "Status",
            "last_extract_status": "Last extract",
            "last_extract_at": st.column_config.DatetimeColumn("Extracted at", format="YYYY-MM-DD HH:mm"),
            "last_reason_code": "Last failure reason",
        },
    )


def section(title: str, body: object) -> None:
    st.subheader(title)
    try:
        body()  # type: ignore[operator]
    except NotPublished as exc:
        st.info(f"Nothing recorded yet ({exc}).")


def api_usage(settings: Settings, q: queries.Query, now: datetime) -> None:
    st.subheader("API usage today")
    start, end = utc_day(now)
    try:
        usage = queries.api_requests(q, start, end)
        failures = queries.failures_by_reason(q, start, end)
        week = queries.failures_by_reason(q, start - timedelta(days=6), end)
    except NotPublished as exc:
        st.info(f"No extraction runs recorded yet ({exc}).")
        return
    used = int(usage["requests"].iloc[0]) if not usage.empty else 0
    runs = int(usage["runs"].iloc[0]) if not usage.empty else 0
    quota = settings.daily_quota
    st.metric("Requests today", f"{used} / {quota}", help=f"UTC day starting {start:%Y-%m-%d %H:%M} UTC")
    st.progress(min(used / quota, 1.0), text=f"{used / quota:.0%} of the daily quota ({runs} run(s) today)")
    if used >= quota:
        st.error("The daily API quota is used up: further requests today will be refused by Alpha Vantage.")
    st.markdown("**Failures by reason**")
    if failures.empty and week.empty:
        st.success("No failed requests in the last 7 days.")
        return
    merged = (week.rename(columns={"failures": "last_7_days"})[["reason_code", "last_7_days", "last_reason"]]
              .merge(failures[["reason_code", "failures"]].rename(columns={"failures": "today"}),
                     on="reason_code", how="left").fillna({"today": 0}))
    merged["today"] = merged["today"].astype(int)
    st.dataframe(merged[["reason_code", "today", "last_7_days", "last_reason"]], hide_index=True, width="stretch",
                 column_config={"reason_code": "Reason", "today": "Today", "last_7_days": "Last 7 days",
                                "last_reason": "Last message"})


def pipeline_runs(q: queries.Query) -> None:
    runs = queries.pipeline_runs(q)
    if runs.empty:
        st.info("No pipeline run recorded yet.")
        return
    seconds = {c: st.column_config.NumberColumn(label, format="%.0f") for c, label in (
        ("extract_s", "Extract (s)"), ("transform_s", "dbt (s)"), ("gate_s", "Gate (s)"), ("publish_s", "Publish (s)"),
        ("total_s", "Total (s)"))}
    st.dataframe(
        runs, hide_index=True, width="stretch",
        column_config={
            "run_started_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm"),
            "outcome": "Outcome", **seconds, "rows_loaded": "Rows loaded", "api_requests": "Requests",
            "symbols_failed": "Symbols failed", "checks_total": "Checks", "checks_failed": "Checks failed",
            "rows_published": "Rows published",
            "newest_trade_date": st.column_config.DateColumn("Newest bar"),
            "freshness_lag_sessions": st.column_config.NumberColumn(
                "Sessions behind", help="NYSE sessions missing after the newest bar, when the gate ran"),
        },
    )
    st.caption("One row per run, from the view ops.pipeline_runs; dbt and publish times are the gaps"
               " between the logged steps (docs/warehouse.md).")


def recent_runs(q: queries.Query) -> None:
    runs = queries.extract_runs(q)
    if runs.empty:
        st.info("No extraction runs recorded yet.")
        return
    runs = runs.assign(status=runs["status"].map(lambda s: STATUS_LABELS.get(s, s)),
                       duration_s=(pd.to_datetime(runs["finished_at"]) - pd.to_datetime(runs["started_at"]))
                       .dt.total_seconds())
    st.dataframe(
        runs[["started_at", "command", "status", "symbols_requested", "symbols_succeeded", "symbols_failed",
              "requests", "bars", "duration_s"]],
        hide_index=True, width="stretch",
        column_config={
            "started_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
            "command": "Command", "status": "Status", "symbols_requested": "Symbols",
            "symbols_succeeded": "OK", "symbols_failed": "Failed", "requests": "Requests", "bars": "Bars",
            "duration_s": st.column_config.NumberColumn("Duration (s)", format="%.1f"),
        },
    )


def last_gate(q: queries.Query) -> None:
    gate = queries.last_gate_run(q)
    if gate.empty:
        st.info("The quality gate has not run yet.")
        return
    g = gate.iloc[0]
    verdict = ":green[:material/check_circle: passed]" if bool(g["success"]) else ":red[:material/cancel: FAILED]"
    st.markdown(f"**{verdict}** · {pd.Timestamp(g['finished_at'] or g['started_at']):%Y-%m-%d %H:%M} UTC · "
                f"{int(g['expectations_total'] or 0) - int(g['expectations_failed'] or 0)}"
                f"/{int(g['expectations_total'] or 0)} expectations met · schema `{g['audit_schema']}`")
    results = queries.gate_results(q, g["gate_run_id"])
    results = results.assign(outcome=results["success"].map({True: "pass", False: "FAIL"}))
    st.dataframe(
        results[["outcome", "mart", "expectation_type", "column_name", "observed_value", "kwargs", "details"]],
        hide_index=True, width="stretch",
        column_config={"outcome": "Outcome", "mart": "Mart", "expectation_type": "Expectation",
                       "column_name": "Column", "observed_value": "Observed", "kwargs": "Arguments",
                       "details": "Details"},
    )


def without_profile(q: queries.Query) -> None:
    """Published symbols Alpha Vantage has no company overview of: an ETF (its ETF_PROFILE) or none."""
    rows = queries.without_company_profile(q)
    if rows.empty:
        st.success("Every published symbol has a company overview.")
        return
    st.dataframe(
        rows, hide_index=True, width="stretch",
        column_config={"symbol": "Symbol", "name": "Name", "asset_type": "Kind", "profile_source": "Profile",
                       "updated_at": st.column_config.DatetimeColumn("Profile loaded", format="YYYY-MM-DD HH:mm")},
    )


def publish_history(q: queries.Query) -> None:
    history = queries.publish_history(q)
    if history.empty:
        st.info("Nothing published yet.")
        return
    st.dataframe(
        history[["published_at", "status", "row_counts", "gate_run_id"]], hide_index=True, width="stretch",
        column_config={
            "published_at": st.column_config.DatetimeColumn("Published", format="YYYY-MM-DD HH:mm:ss"),
            "status": "Status", "row_counts": "Row counts", "gate_run_id": "Gate run",
        },
    )


if __name__ == "__main__":  # Streamlit runs each page as a script (st.navigation in app.py)
    render(page)
