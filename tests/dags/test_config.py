"""Settings: the environment read once, bad values refused at parse time with the variable's name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagtest import base_env
from datapipe_dags.config import DEFAULT_SYMBOLS, REPO_ROOT, ConfigError, Settings, check_image


def test_defaults_are_kubernetes_with_pinned_images() -> None:
    s = Settings.from_env({})
    assert s.runtime == "kubernetes"
    assert s.symbols == DEFAULT_SYMBOLS and len(s.symbols) == 10
    for image in (s.image_extract, s.image_transform):
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    assert s.dbt_project_dir == "."
    assert s.dbt_manifest == REPO_ROOT / "dbt" / "target" / "manifest.json"
    assert s.alert_email_to == () and s.slack_conn_id is None and s.smtp_conn_id == "smtp_default"


def test_values_are_read_from_the_mapping() -> None:
    s = Settings.from_env(base_env(
        DATAPIPE_SYMBOLS=" aapl, msft ,AAPL", DATAPIPE_ALERT_EMAIL_TO="a@x.org, b@y.org",
        DATAPIPE_SLACK_CONN_ID="slack_alerts", DATAPIPE_TASK_RETRIES="0", DATAPIPE_AIRFLOW_BASE_URL="https://af.example/",
        DATAPIPE_POD_RESOURCES=json.dumps({"transform": {"limits": {"memory": "4Gi"}}}),
    ))
    assert s.symbols == ("AAPL", "MSFT")
    assert s.alert_email_to == ("a@x.org", "b@y.org")
    assert s.slack_conn_id == "slack_alerts"
    assert s.retries == 0
    assert s.airflow_base_url == "https://af.example"
    assert s.resources["transform"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert s.resources["extract"]["requests"]["cpu"] == "100m"
    assert s.namespace == "pipelines" and s.service_account == "datapipe-runner"


def test_local_runtime_defaults_point_into_the_checkout() -> None:
    s = Settings.from_env({"DATAPIPE_RUNTIME": "local"})
    assert s.is_local
    assert Path(s.dbt_project_dir) == REPO_ROOT / "dbt"
    assert s.dbt_executable == REPO_ROOT / ".local" / "venvs" / "transform" / "bin" / "dbt"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("datapipe-extract:latest", "the tag 'latest', which is not allowed"),
        ("ghcr.io/acme/datapipe-extract:LATEST", "the tag 'latest', which is not allowed"),
        ("datapipe-extract", "has no tag"),
        ("localhost:5000/datapipe-extract", "has no tag"),
        ("datapipe-extract:", "empty tag"),
        ("", "not an image reference"),
    ],
)
def test_unpinned_images_are_rejected_with_a_clear_error(ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Settings.from_env(base_env(DATAPIPE_IMAGE_TRANSFORM=ref) if ref else {"DATAPIPE_IMAGE_TRANSFORM": " x y "})
    assert "DATAPIPE_IMAGE_TRANSFORM" in str(err.value)


@pytest.mark.parametrize(
    "ref", ["datapipe-extract:0.1.0", "localhost:5000/datapipe/extract:2026.11.26",
            "datapipe-extract@sha256:" + "a" * 64],
)
def test_pinned_images_are_accepted(ref: str) -> None:
    assert check_image("DATAPIPE_IMAGE_EXTRACT", ref) == ref


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("DATAPIPE_RUNTIME", "docker", "use 'local' or 'kubernetes'"),
        ("DATAPIPE_NAMESPACE", "Bad_Namespace", "not a valid Kubernetes name"),
        ("DATAPIPE_WAREHOUSE_SECRET", "has space", "not a valid Kubernetes name"),
        ("DATAPIPE_SYMBOLS", " , ", "DATAPIPE_SYMBOLS names no symbol"),
        ("DATAPIPE_SYMBOLS", "AAPL,DROP TABLE", "invalid symbols"),
        ("DATAPIPE_TASK_RETRIES", "three", "not an integer"),
        ("DATAPIPE_POD_STARTUP_TIMEOUT_SECONDS", "0", "must be >= 1"),
        ("DATAPIPE_POD_RESOURCES", "{nope", "not valid JSON"),
        ("DATAPIPE_POD_RESOURCES", '{"dashboard": {}}', "unknown component"),
        ("DATAPIPE_POD_RESOURCES", '{"extract": {"limits": {"cpu": "lots"}}}', "bad cpu"),
        ("DATAPIPE_ALERT_EMAIL_TO", "oncall", "invalid addresses"),
        ("DATAPIPE_AIRFLOW_BASE_URL", "localhost:8080", "must start with http"),
        ("DATAPIPE_IMAGE_PULL_POLICY", "Sometimes", "DATAPIPE_IMAGE_PULL_POLICY"),
        ("DATAPIPE_PGSSLMODE", "maybe", "not a libpq sslmode"),
        ("DATAPIPE_SLACK_CONN_ID", "slack alerts", "not a valid Airflow connection id"),
        ("DATAPIPE_MAX_RETRY_DELAY_SECONDS", "5", "is below DATAPIPE_RETRY_DELAY_SECONDS"),
    ],
)
def test_invalid_values_name_the_variable(var: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        Settings.from_env(base_env(**{var: value}))
    assert var in str(err.value)


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.runtime = "local"  # type: ignore[misc]
