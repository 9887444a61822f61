"""Fixtures of the chart tests (helpers live in chart_helpers.py)."""

from __future__ import annotations

from typing import Any

import pytest
from chart_helpers import SCENARIOS, Renderer, ensure_helm, scenario_values


@pytest.fixture(scope="session")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(ensure_helm(), tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="session")
def rendered(renderer: Renderer) -> dict[str, list[dict[str, Any]]]:
    """Every scenario x Airflow on/off, rendered once per session: {"<scenario>/airflow-on": [objects]}."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name in SCENARIOS:
        for enabled in (True, False):
            out[f"{name}/airflow-{'on' if enabled else 'off'}"] = renderer.template(scenario_values(name, enabled))
    return out
