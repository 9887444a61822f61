"""steps.toml is the one definition of every step's command: the DAG reads it, never repeats it."""

from __future__ import annotations

import tomllib

import pytest
from datapipe_dags.steps import STEPS_FILE, StepsError, load_steps, parse_steps

DAG_STEPS = ("extract_prices", "extract_companies", "quality_gate", "publish_marts", "grant_reader")


def test_steps_file_parses_and_has_the_dag_steps() -> None:
    steps = load_steps()
    raw = tomllib.loads(STEPS_FILE.read_text())
    for name in DAG_STEPS:
        assert steps[name].command == tuple(raw["steps"][name]["command"])
        assert steps[name].component.name == raw["steps"][name]["component"]
    assert steps["quality_gate"].component.local_dir == "dbt"
    assert steps["extract_prices"].component.venv == "extract"


def test_unknown_step_is_a_clear_error() -> None:
    with pytest.raises(StepsError, match="unknown step 'nope'"):
        load_steps()["nope"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"components": {"x": {"image": "i"}}}, "lacks 'local_dir'"),
        ({"components": {}, "steps": {"s": {"component": "x", "command": ["a"]}}}, "unknown component"),
        ({"components": {"x": {"image": "i", "local_dir": ".", "venv": "v"}},
          "steps": {"s": {"component": "x", "command": []}}}, "non-empty list"),
        ({"components": {}, "steps": {}, "pipeline": {"order": ["ghost"]}}, "unknown steps"),
    ],
)
def test_malformed_steps_are_refused(data: dict, message: str) -> None:
    with pytest.raises(StepsError, match=message):
        parse_steps(data)


def test_dag_commands_come_from_steps_toml(k8s_dag, build_dag) -> None:
    steps = load_steps()
    local_dag = build_dag(DATAPIPE_RUNTIME="local", DATAPIPE_DBT_PROJECT_DIR=str(__import__("dagtest").DBT_PROJECT))
    for name in DAG_STEPS:
        pod = k8s_dag.get_task(name)
        assert [*pod.cmds, *pod.arguments] == list(steps[name].command)
        local = local_dag.get_task(name)
        assert local.command == list(steps[name].command)
        assert local.cwd.endswith("/" + steps[name].component.local_dir)
        assert local.venv_dir.endswith("/.local/venvs/" + steps[name].component.venv)
