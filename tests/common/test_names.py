"""One name per thing: the names retired by the renames stay retired in code, docs and make targets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RETIRED = {
    "dags/datapipe/": "dags/datapipe_dags/ (the DAGs' helper package)",
    "from datapipe.": "from datapipe_dags.",
    "datapipe_dashboard.views": "datapipe_dashboard.pages",
    "datapipe_dashboard/screens": "datapipe_dashboard/pages",
    "datapipe_dashboard.portfolio": "datapipe_dashboard.holdings",
    "trading_calendar": "datapipe_common.calendar",
    "quality.calendar": "datapipe_common.calendar",
    "sandbox.calendar": "datapipe_common.calendar",
}


@pytest.mark.parametrize("old", sorted(RETIRED))
def test_retired_name_is_gone(old: str) -> None:
    found = subprocess.run(["git", "grep", "-n", "-F", old, "--", ".", ":!tests/common/test_names.py",
                            ":!*.lock"], cwd=ROOT, capture_output=True, text=True)
    assert found.stdout == "", f"{old!r} is retired (use {RETIRED[old]}):\n{found.stdout}"
