"""steps.toml is the one definition of every step's command: the DAG reads it, never repeats it."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest
from datapipe_dags.steps import STEPS_FILE, StepsError, load_steps, local_run, parse_steps

ROOT = Path(__file__).resolve().parents[2]

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
        run = local.local_run()
        component = steps[name].component
        assert run.cwd == ROOT / component.local_dir
        assert run.argv == (str(ROOT / ".local" / "venvs" / component.venv / "bin" / steps[name].command[0]),
                            *steps[name].command[1:])
        assert run.env["PATH"].startswith(str(ROOT / ".local" / "venvs" / component.venv / "bin"))
        assert run.env["DATAPIPE_SYMBOLS"] and all(run.env[k] == v for k, v in component.env.items())


def test_transform_steps_name_the_profile_and_target_of_the_producer(build_dag) -> None:
    """Every transform command runs with the dbt profile and target the DAG's Cosmos producer passes as
    --profile/--target (dbt keeps its saved parse only across invocations naming the same ones), and
    they are dbt_project.yml's profile and profiles.yml's default target."""
    import yaml
    from dagtest import DBT_PROJECT

    env = load_steps().components["transform"].env
    project = yaml.safe_load((DBT_PROJECT / "dbt_project.yml").read_text())
    profiles = yaml.safe_load((DBT_PROJECT / "profiles.yml").read_text())
    assert env["DBT_PROFILE"] == project["profile"]
    assert env["DBT_TARGET"] == profiles[project["profile"]]["target"]
    producer = build_dag(DATAPIPE_RUNTIME="local", DATAPIPE_DBT_PROJECT_DIR=str(DBT_PROJECT)).get_task(
        "dbt.dbt_producer_watcher")
    assert (producer.profile_config.profile_name, producer.profile_config.target_name) == (
        env["DBT_PROFILE"], env["DBT_TARGET"])
    assert producer.env["DBT_PROFILE"] == env["DBT_PROFILE"] and producer.env["DBT_TARGET"] == env["DBT_TARGET"]


def test_local_run_layers_the_environment() -> None:
    """The caller's environment (a pod's Secrets), then the DAG's plain env, then the component's."""
    steps = load_steps()
    run = local_run(steps["dbt_build"], repo_root=Path("/repo"), venvs_dir=Path("/v"),
                    base_env={"PATH": "/usr/bin", "PGHOST": "db", "DBT_PROFILES_DIR": "x", "PYTHONHOME": "/p"},
                    plain_env={"DATAPIPE_SYMBOLS": "IBM", "PGHOST": "ignored-by-nobody"}, extra_args=["-s", "m"])
    assert run.argv == ("/v/transform/bin/dbt", "build", "--exclude", "tag:quotes", "-s", "m")
    assert run.cwd == Path("/repo/dbt")
    assert run.env["PATH"] == "/v/transform/bin:/usr/bin" and run.env["VIRTUAL_ENV"] == "/v/transform"
    assert run.env["DBT_PROFILES_DIR"] == "." and run.env["DATAPIPE_SYMBOLS"] == "IBM"
    assert run.env["PGHOST"] == "ignored-by-nobody" and "PYTHONHOME" not in run.env


def test_make_pipeline_uses_the_same_loader() -> None:
    """scripts/run-step lists exactly the loaded steps, and nothing but datapipe_dags.steps reads steps.toml."""
    listed = subprocess.run([str(ROOT / "scripts" / "run-step"), "--list"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    assert [line.split()[0] for line in listed if line] == list(load_steps().steps)
    readers = subprocess.run(["git", "grep", "-l", "tomllib", "--", ":!tests/"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert readers == ["dags/datapipe_dags/steps.py"]
