"""values.yaml is documented key by key, mirrored by values.schema.json; the Airflow block validates
against the official chart's schema; generated secrets survive an upgrade."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_helpers import CHART, FIXTURES, Renderer, find, secret_data

VALUES_FILE = CHART / "values.yaml"
SCHEMA_FILE = CHART / "values.schema.json"
AIRFLOW_SCHEMA = FIXTURES / "airflow-chart" / "values.schema.json"


def test_every_values_key_has_a_comment_above_it() -> None:
    """Each key line is preceded by a comment line (or is an item of a documented block)."""
    lines = VALUES_FILE.read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if not match or line.lstrip().startswith("#"):
            continue
        indent = len(match.group(1))
        prev = lines[i - 1].strip() if i else ""
        if prev.startswith("#"):
            continue
        # keys of a small block whose parent line is commented (eg. runAsUser under securityContexts.pod)
        parent = next(
            (
                lines[j]
                for j in range(i - 1, -1, -1)
                if lines[j].strip()
                and not lines[j].lstrip().startswith("#")
                and len(lines[j]) - len(lines[j].lstrip()) < indent
            ),
            None,
        )
        if parent is not None and indent >= 4 and "airflow" in _ancestry(lines, i):
            continue
        undocumented.append(f"line {i + 1}: {line.strip()}")
    assert not undocumented, "keys without a comment above them:\n" + "\n".join(undocumented)


def _ancestry(lines: list[str], index: int) -> list[str]:
    indent = len(lines[index]) - len(lines[index].lstrip())
    out = []
    for j in range(index - 1, -1, -1):
        line = lines[j]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ind = len(line) - len(line.lstrip())
        if ind < indent:
            out.append(line.strip().split(":")[0])
            indent = ind
    return out


def _schema_mirrors(values: Any, schema: dict[str, Any], defs: dict[str, Any], path: str, problems: list[str]) -> None:
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if not isinstance(values, dict) or not values or "properties" not in schema:
        return  # leaves, and empty optional shapes (documented with an `eg:` comment)
    if schema.get("additionalProperties") is not False:
        problems.append(f"{path or '<root>'}: additionalProperties is not false")
    props = schema["properties"]
    for key in values:
        if key not in props:
            problems.append(f"{path}.{key}: in values.yaml but not in the schema")
    for key in props:
        if key not in values and key != "global":
            problems.append(f"{path}.{key}: in the schema but not in values.yaml")
    for key, sub in values.items():
        if path == "" and key == "airflow":
            continue  # the subchart's values: validated against the official schema below
        if key in props:
            _schema_mirrors(sub, props[key], defs, f"{path}.{key}", problems)


def test_schema_mirrors_values_with_additional_properties_false() -> None:
    values = yaml.safe_load(VALUES_FILE.read_text())
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(values)
    problems: list[str] = []
    _schema_mirrors(values, schema, schema["definitions"], "", problems)
    assert not problems, "\n".join(problems)


def test_airflow_values_validate_against_the_official_chart_schema() -> None:
    airflow = dict(yaml.safe_load(VALUES_FILE.read_text())["airflow"])
    # `enabled` is the condition of the dependency in Chart.yaml, consumed by Helm, not by that chart.
    assert airflow.pop("enabled") is True
    schema = json.loads(AIRFLOW_SCHEMA.read_text())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(airflow)]
    assert not errors, "\n".join(errors)
    assert airflow["executor"] == "LocalExecutor"
    assert airflow["postgresql"] == {"enabled": False}
    assert airflow["migrateDatabaseJob"]["useHelmHooks"] is False
    assert airflow["defaultAirflowRepository"] == "datapipe-airflow"
    # one place for the Airflow image: every component and the KubernetesExecutor worker template
    assert "repository" not in airflow["images"]["airflow"] and "tag" not in airflow["images"]["airflow"]
    assert airflow["allowPodLaunching"] is False


def test_official_schema_rejects_a_wrong_airflow_value() -> None:
    schema = json.loads(AIRFLOW_SCHEMA.read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({"apiServer": {"replicaz": 1}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({"migrateDatabaseJob": {"useHelmHooks": "no"}})


def test_chart_declares_the_pinned_airflow_dependency() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    (dep,) = chart["dependencies"]
    assert dep == {
        "name": "airflow",
        "version": "1.22.0",
        "repository": "https://airflow.apache.org",
        "condition": "airflow.enabled",
    }


# -- secrets kept across upgrades --------------------------------------------------------------------
LOOKUP_STUB = """{{/* Test stub: the "live" objects of a previous release. */}}
{{- define "datapipe.lookup" -}}
{{- $live := fromYaml `%s` -}}
{{- toYaml (get $live (index . 3) | default dict) -}}
{{- end -}}
"""

GENERATED = [
    ("datapipe-warehouse-admin", "password"),
    ("datapipe-pipeline-env", "PGPASSWORD"),
    ("datapipe-dashboard-env", "PGPASSWORD"),
    ("datapipe-airflow-metadata", "password"),
    ("datapipe-airflow-metadata", "connection"),
    ("datapipe-airflow-admin", "passwords.json"),
    ("datapipe-api", "ALPHAVANTAGE_API_KEY"),
    ("datapipe-airflow-jwt", "jwt-secret"),
    ("datapipe-airflow-api-secret-key", "api-secret-key"),
]


def _generated_values(objects: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    out = {}
    for name, key in GENERATED:
        secret = find(objects, "Secret", name)
        assert secret is not None, name
        out[(name, key)] = secret_data(secret)[key]
    return out


def test_generated_secrets_survive_an_upgrade(renderer: Renderer, tmp_path: Path) -> None:
    first = renderer.template()
    before = _generated_values(first)
    # A plain re-render (no live objects) generates new values: the stub below is what keeps them.
    assert _generated_values(renderer.template()) != before
    live = {o["metadata"]["name"]: o for o in first if o["kind"] == "Secret"}
    chart = renderer.chart_copy(lookup_stub=LOOKUP_STUB % json.dumps(live).replace("`", ""))
    upgraded = renderer.template(chart=chart)
    assert _generated_values(upgraded) == before
    # and a value given explicitly still wins over the live one
    with_key = renderer.template({"api": {"key": "A-REAL-KEY-123"}}, chart=chart)
    assert secret_data(find(with_key, "Secret", "datapipe-api") or {})["ALPHAVANTAGE_API_KEY"] == "A-REAL-KEY-123"


def test_generated_warehouse_secrets_are_kept_on_uninstall(renderer: Renderer) -> None:
    objects = renderer.template()
    for name in (
        "datapipe-warehouse-admin",
        "datapipe-pipeline-env",
        "datapipe-dashboard-env",
        "datapipe-airflow-metadata",
    ):
        secret = find(objects, "Secret", name)
        assert secret is not None
        # the data volume outlives an uninstall, so must the passwords it was initialised with
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_default_symbols_are_the_shared_default() -> None:
    """The chart's `pipeline.symbols` is the one default list of datapipe_common (same symbols, same
    order), so a cluster tracks what `make demo` tracks."""
    sys.path.insert(0, str(CHART.parents[1] / "common" / "src"))
    from datapipe_common.symbols import DEFAULT_SYMBOLS, parse_symbols

    values = yaml.safe_load(VALUES_FILE.read_text())
    assert parse_symbols(values["pipeline"]["symbols"]) == DEFAULT_SYMBOLS
