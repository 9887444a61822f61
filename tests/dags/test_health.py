"""The import-error check of the health DAG (datapipe_dags.health), without Airflow services; the
real thing (dag processor, API server, alerts) runs in test_oncall.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from datapipe_dags.health import (
    DagImportError,
    HealthCheckError,
    api_base_url,
    import_error_message,
    to_alert,
    workers_api_url,
)

TRACE = """Traceback (most recent call last):
  File "/opt/airflow/dags/market_data_daily.py", line 25, in <module>
    dag = build_market_data_daily(Settings.from_env(os.environ), doc_md=__doc__)
  File "/opt/airflow/dags/datapipe_dags/config.py", line 200, in from_env
    raise ConfigError(problems[0])
datapipe_common.config.ConfigError: DATAPIPE_ALERT_EMAIL_TO has invalid addresses: ['oncall']
"""


def error(trace: str = TRACE, filename: str = "market_data_daily.py") -> DagImportError:
    return DagImportError(bundle_name="dags-folder", filename=filename, timestamp="2026-11-25T22:31:02Z",
                          stack_trace=trace)


def test_an_error_is_its_file_and_its_exception_line() -> None:
    first = error()
    assert first.error == ("datapipe_common.config.ConfigError: DATAPIPE_ALERT_EMAIL_TO has invalid addresses:"
                           " ['oncall']")
    # the file edited (line numbers moved), the same exception: the same error
    moved = error(TRACE.replace("line 25", "line 31"))
    assert moved.fingerprint == first.fingerprint
    other = error(TRACE.replace("['oncall']", "['on call']"))
    assert other.fingerprint != first.fingerprint
    assert error(filename="other.py").fingerprint != first.fingerprint


def test_only_errors_not_alerted_yet_are_alerted() -> None:
    first, other_file = error(), error(filename="other.py")
    assert to_alert([first, other_file], {}) == [first, other_file]
    assert to_alert([first, other_file], {first.key: first.fingerprint}) == [other_file]
    changed = error(TRACE.replace("['oncall']", "['x']"))
    assert to_alert([changed], {first.key: first.fingerprint}) == [changed]


def test_import_error_message() -> None:
    trace = TRACE.replace("['oncall']", "['oncall'] (password=hunter2)")
    msg = import_error_message(error(trace), "https://airflow.example.com")
    assert msg.subject == "[datapipe] DAG import error: market_data_daily.py"
    assert msg.lines[:9] == (
        "DAG import error in dags-folder/market_data_daily.py",
        "",
        "File:         market_data_daily.py",
        "Bundle:       dags-folder",
        "Since:        2026-11-25T22:31:02Z",
        "Error:        datapipe_common.config.ConfigError: DATAPIPE_ALERT_EMAIL_TO has invalid addresses: ['oncall']"
        " (password=***",  # redact() masks up to the next space, quote, comma or semicolon
        "Effect:       the file's DAGs are not scheduled until it imports again",
        "Errors page:  https://airflow.example.com/dags (Dag Import Errors)",
        "",
    )
    assert msg.lines[9] == "Traceback (last 6 lines):"
    assert "hunter2" not in msg.text and "hunter2" not in msg.html


@pytest.mark.parametrize(
    ("conn", "url"),
    [
        ({"host": "http://datapipe-api-server:8080"}, "http://datapipe-api-server:8080"),
        ({"host": "https://airflow.example.com/"}, "https://airflow.example.com"),
        ({"host": "datapipe-api-server", "port": 8080}, "http://datapipe-api-server:8080"),
        ({"host": "airflow.example.com", "schema": "https", "port": 443}, "https://airflow.example.com:443"),
        ({"host": "http://127.0.0.1:8080", "port": 9999}, "http://127.0.0.1:8080"),
    ],
)
def test_api_base_url(conn: dict[str, object], url: str) -> None:
    assert api_base_url(SimpleNamespace(conn_id="airflow_api", **{"schema": None, "port": None, **conn})) == url


def test_a_connection_without_host_uses_the_workers_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = SimpleNamespace(conn_id="airflow_api", host=None, schema=None, port=None)
    assert api_base_url(conn, "http://datapipe-airflow-api-server:8080/") == "http://datapipe-airflow-api-server:8080"
    # what the Airflow chart configures for its workers (read by Airflow from the environment)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "http://api.example:8080/execution/")
    assert workers_api_url() == "http://api.example:8080"


def test_api_connection_without_host_or_with_another_scheme_says_what_to_set() -> None:
    with pytest.raises(HealthCheckError, match="has no host"):
        api_base_url(SimpleNamespace(conn_id="airflow_api", host="", schema=None, port=None))
    with pytest.raises(HealthCheckError, match="must be http"):
        api_base_url(SimpleNamespace(conn_id="airflow_api", host="file:///etc/passwd", schema=None, port=None))
