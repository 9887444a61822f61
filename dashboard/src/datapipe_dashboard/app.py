"""Entry script (`streamlit run .../app.py`, or the `datapipe-dashboard` console script)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent

st.set_page_config(page_title="datapipe analytics", page_icon=":material/monitoring:", layout="wide")

navigation = st.navigation(
    [
        st.Page(HERE / "pages" / "market.py", title="Market overview", icon=":material/table_chart:",
                url_path="market", default=True),
        st.Page(HERE / "pages" / "symbol.py", title="Symbol detail", icon=":material/candlestick_chart:",
                url_path="symbol"),
        st.Page(HERE / "pages" / "portfolio.py", title="Portfolio", icon=":material/account_balance_wallet:",
                url_path="portfolio"),
        st.Page(HERE / "pages" / "quality.py", title="Data quality", icon=":material/fact_check:",
                url_path="quality"),
    ]
)
st.sidebar.caption("Published marts, read-only. Source: Alpha Vantage daily prices.")
navigation.run()
