"""Fixtures of the dashboard suite: the known dataset in the session warehouse, settings, AppTest."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import datapipe_dashboard
from datapipe_dashboard.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
import seed  # noqa: E402

APP = Path(datapipe_dashboard.__file__).parent / "app.py"
PAGES = {
    "market": "screens/market.py",
    "symbol": "screens/symbol.py",
    "portfolio": "screens/portfolio.py",
    "quality": "screens/quality.py",
}


@dataclass
class Dataset:
    warehouse: object
    settings: Settings

    def admin(self, dbname: str | None = None) -> psycopg.Connection:
        return psycopg.connect(seed.conninfo(self.warehouse.admin_env, dbname), autocommit=True)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.admin() as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def dataset(warehouse) -> Dataset:
    seed.seed(warehouse.admin_env)
    settings = Settings(libpq=dict(warehouse.reader_env), now_override=seed.NOW, retry_seconds=1)
    return Dataset(warehouse, settings)


@pytest.fixture
def make_app(dataset: Dataset) -> Callable[..., AppTest]:
    """AppTest of the real entry script on one page, with injected settings (fresh caches)."""

    def make(page: str = "market", settings: Settings | None = None, query: dict[str, str] | None = None) -> AppTest:
        st.cache_data.clear()
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.session_state["datapipe_settings"] = settings or dataset.settings
        if query:
            at.query_params.update(query)
        at.run()
        if page != "market":
            at.switch_page(PAGES[page]).run()
        return at

    return make
