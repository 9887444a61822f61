"""Portfolio: holdings from an editable table or a CSV, valued from the published closes."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from datapipe_dashboard import charts, holdings, live, queries
from datapipe_dashboard.settings import Settings
from datapipe_dashboard.ui import as_date, overview, plain, render, signed_color

PERIODS = {"3 months": 92, "1 year": 365, "3 years": 3 * 365, "5 years": 5 * 365, "All": None}
EXAMPLE_SHARES = (10, 25, 5)


def example_holdings(ov: pd.DataFrame) -> pd.DataFrame:
    """A starting point: a few published symbols at 90 % of their last close."""
    rows = []
    for shares, (_, r) in zip(EXAMPLE_SHARES, ov.head(len(EXAMPLE_SHARES)).iterrows(), strict=False):
        rows.append({"symbol": r["symbol"], "shares": float(shares),
                     "cost_basis": round(float(r["close"]) * shares * 0.9, 2)})
    return pd.DataFrame(rows, columns=list(holdings.CSV_COLUMNS))


def problem_list(problems: list[holdings.Problem], source: str) -> str:
    """The warning's markdown: our emphasis, every piece of user text escaped, at most
    MAX_PROBLEMS_SHOWN lines."""
    lines = [f"- {plain(str(p))}" for p in problems[:holdings.MAX_PROBLEMS_SHOWN]]
    if len(problems) > holdings.MAX_PROBLEMS_SHOWN:
        lines.append(f"- … and {len(problems) - holdings.MAX_PROBLEMS_SHOWN} more not shown")
    return f"**{len(problems)} row(s) of {plain(source)} ignored:**\n" + "\n".join(lines)


def page(settings: Settings, q: queries.Query) -> None:
    ov = overview(q)
    known = set(ov["symbol"])
    st.title("Portfolio")
    st.caption("Enter holdings in the table or upload a CSV with the header `symbol,shares,cost_basis` "
               "(cost_basis = total paid for the position). Nothing you enter is stored.")

    left, right = st.columns([3, 2])
    with left:
        edited = st.data_editor(
            example_holdings(ov), key="holdings", num_rows="dynamic", hide_index=True, width="stretch",
            column_config={
                "symbol": st.column_config.TextColumn("symbol", help="a published symbol, e.g. IBM"),
                "shares": st.column_config.NumberColumn(
                    "shares", format="%.4g", help=f"more than 0, at most {holdings.MAX_SHARES}"),
                "cost_basis": st.column_config.NumberColumn(
                    "cost_basis", format="%.2f", help=f"total paid, 0 to {holdings.MAX_COST_BASIS}"),
            },
        )
    with right:
        upload = st.file_uploader("Upload holdings CSV", type=["csv"], key="holdings_csv",
                                  max_upload_size=holdings.MAX_UPLOAD_MB,
                                  help=f"Replaces the table while uploaded (at most {holdings.MAX_UPLOAD_MB} MB)")

    if upload is not None:
        parsed = holdings.parse_csv(upload.getvalue(), known)
        source = f"CSV {holdings.echo(upload.name, 80)}"
    else:
        parsed = holdings.parse_table(edited, known)
        source = "the table"
    if parsed.problems:
        st.warning(problem_list(parsed.problems, source), icon=":material/error:")
    if not parsed.holdings:
        st.info("No valid holdings to value yet.")
        return

    pos = holdings.positions(parsed.holdings)
    val = holdings.valuation(pos, dict(zip(ov["symbol"], ov["close"].astype(float), strict=True)),
                       dict(zip(ov["symbol"], ov["sector"], strict=True)))
    tot = holdings.totals(val)
    m = st.columns(4)
    m[0].metric("Market value", f"{tot['value']:,.2f}")
    m[1].metric("Cost basis", f"{tot['cost']:,.2f}")
    m[2].metric("P/L", f"{tot['pl']:+,.2f}", f"{tot['pl_pct']:+.2f} %", delta_color="normal")
    m[3].metric("Positions", len(val))

    live.fragment(settings, lambda: live_value(settings, val))

    latest = as_date(ov["trade_date"].max())
    period = st.segmented_control("Period", list(PERIODS), default="1 year", key="period") or "1 year"
    days = PERIODS[period]
    start = latest - timedelta(days=days) if days else as_date("1900-01-01")
    series = holdings.value_over_time(pos, queries.closes(q, list(pos["symbol"]), start))

    chart_col, alloc_col = st.columns([3, 2])
    with chart_col:
        st.subheader("Value over time")
        if series.empty:
            st.info("No common price history for these symbols in this period.")
        else:
            st.vega_lite_chart(spec=charts.value_chart(series, tot["cost"]), key="value_chart", width="stretch")
    with alloc_col:
        st.subheader("Allocation")
        st.vega_lite_chart(spec=charts.allocation_chart(val), key="allocation_chart", width="stretch")

    st.subheader("Positions")
    table = val[["symbol", "sector", "shares", "cost_basis", "last_close", "market_value", "pl", "pl_pct",
                 "weight_pct"]]
    st.dataframe(
        table.style.map(signed_color, subset=["pl", "pl_pct"]),
        hide_index=True, width="stretch",
        column_config={
            "shares": st.column_config.NumberColumn("Shares", format="%.4g"),
            "cost_basis": st.column_config.NumberColumn("Cost basis", format="%.2f"),
            "last_close": st.column_config.NumberColumn("Last close", format="%.2f"),
            "market_value": st.column_config.NumberColumn("Market value", format="%.2f"),
            "pl": st.column_config.NumberColumn("P/L", format="%+.2f"),
            "pl_pct": st.column_config.NumberColumn("P/L %", format="%+.2f %%"),
            "weight_pct": st.column_config.ProgressColumn("Weight", min_value=0, max_value=100, format="%.1f %%"),
        },
    )


def live_value(settings: Settings, val: pd.DataFrame) -> None:
    """During the session: the holdings at their live prices next to their value at the last close."""

    def metrics(quoted: pd.DataFrame) -> None:
        now_value = float((quoted["shares"] * quoted["price_usd"]).sum())
        closed = quoted[quoted["last_close_usd"].notna()]  # the change needs a published close
        close_value = float((closed["shares"] * closed["last_close_usd"]).sum())
        since = float((closed["shares"] * closed["price_usd"]).sum()) - close_value
        m = st.columns(4)
        m[0].metric("Live value", f"{now_value:,.2f}",
                    f"{since:+,.2f} since the last close" if not closed.empty else None,
                    help=f"{len(quoted)} of {len(val)} positions with a live price"
                         + (f", {len(quoted) - len(closed)} of them with {live.NO_CLOSE}" if len(closed) < len(quoted)
                            else ""))
        m[1].metric("Value at the last close", f"{close_value:,.2f}" if not closed.empty else "-")

    live.block(settings, ["symbol", "shares", "price_usd", "change_pct", "last_close_usd", "label"],
               select=lambda frame: val.merge(frame, on="symbol", how="inner"), lead=metrics)


if __name__ == "__main__":  # Streamlit runs each page as a script (st.navigation in app.py)
    render(page)
