"""Start-up of the `datapipe-dashboard` console script: a bad setting stops it before the server
starts, with one line naming the variable and exit code 2 (docs/common.md, "Exit codes")."""

from __future__ import annotations

import os
import subprocess

import pytest
from dashboard_helpers import venv_bin

BAD = [
    ({"DASHBOARD_NOW": "yesterday"}, "DASHBOARD_NOW='yesterday' is not an ISO date or datetime"),
    ({"DASHBOARD_PORT": "http"}, "DASHBOARD_PORT='http' is not an integer"),
    ({"DASHBOARD_PORT": "70000"}, "DASHBOARD_PORT='70000' must be between 1 and 65535"),
    ({"PGPORT": "five"}, "PGPORT='five' is not a TCP port number"),
    ({"ALPHAVANTAGE_DAILY_QUOTA": "0"}, "ALPHAVANTAGE_DAILY_QUOTA='0' must be >= 1"),
]


def start(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DASHBOARD_", "ALPHAVANTAGE_"))}
    return subprocess.run([str(venv_bin("dashboard", "datapipe-dashboard")), "--port", "1", *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("env", "message"), BAD, ids=[next(iter(e)) + "=" + next(iter(e.values())) for e, _ in BAD])
def test_a_bad_setting_stops_start_up_in_one_line(env: dict[str, str], message: str) -> None:
    proc = subprocess.run(
        [str(venv_bin("dashboard", "datapipe-dashboard"))],
        env={**{k: v for k, v in os.environ.items() if not k.startswith(("PG", "DASHBOARD_", "ALPHAVANTAGE_"))},
             **env},
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"datapipe-dashboard: configuration error: {message} -> fix the variable (docs/dashboard.md,"
        " configuration) and start the dashboard again"
    ]


def test_debug_adds_the_traceback() -> None:
    proc = start("--debug", DASHBOARD_NOW="yesterday")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("datapipe-dashboard: configuration error: DASHBOARD_NOW")
