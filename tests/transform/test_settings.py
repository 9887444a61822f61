"""Configuration errors name the variable; the CLI exits 2 on them."""

from __future__ import annotations

import pytest
from datapipe_common.symbols import DEFAULT_SYMBOLS
from quality.cli import main
from quality.settings import ConfigError, Settings

PG = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGDATABASE": "warehouse", "PGUSER": "pipeline", "PGPASSWORD": "p w'd"}


def test_defaults() -> None:
    s = Settings.from_env(PG)
    assert s.symbols == DEFAULT_SYMBOLS and s.audit_schema == "audit" and s.marts_schema == "marts"
    assert s.dashboard_role == "dashboard" and s.row_count_tolerance == 0.05 and s.today is None
    assert (s.lock_timeout_s, s.swap_timeout_s) == (60.0, 2.0)
    assert "password='p w\\'d'" in s.conninfo()
    tls = Settings.from_env({**PG, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "/etc/ca.pem"})
    assert tls.sqlalchemy_url().endswith("/warehouse?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem")
    assert "sslrootcert=/etc/ca.pem" in tls.conninfo()
    assert s.sqlalchemy_url().startswith("postgresql+psycopg2://pipeline:p%20w%27d@127.0.0.1:5432/warehouse")


@pytest.mark.parametrize(("env", "message"), [
    ({"PGHOST": ""}, "PGHOST"),
    ({"QUALITY_TODAY": "13/06/2025"}, "QUALITY_TODAY"),
    ({"QUALITY_ROW_COUNT_TOLERANCE": "2"}, "QUALITY_ROW_COUNT_TOLERANCE"),
    ({"QUALITY_FRESHNESS_LAG_DAYS": "x"}, "QUALITY_FRESHNESS_LAG_DAYS"),
    ({"DASHBOARD_ROLE": "dash; drop table x"}, "DASHBOARD_ROLE"),
    ({"DATAPIPE_SYMBOLS": " , "}, "DATAPIPE_SYMBOLS"),
    ({"DATAPIPE_SYMBOLS": "IBM,X'); drop table y;--"}, "DATAPIPE_SYMBOLS has invalid symbols"),
    ({"QUALITY_SWAP_TIMEOUT_S": "0"}, "QUALITY_SWAP_TIMEOUT_S"),
    ({"QUALITY_SWAP_TIMEOUT_S": "30", "QUALITY_LOCK_TIMEOUT_S": "10"}, "must not exceed QUALITY_LOCK_TIMEOUT_S"),
])
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**PG, **env})


def test_cli_exits_2_on_configuration_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gate"], env={**PG, "QUALITY_TODAY": "tomorrow"}) == 2
    assert "QUALITY_TODAY" in capsys.readouterr().err
