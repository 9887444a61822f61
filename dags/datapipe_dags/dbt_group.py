"""The Cosmos task group: one Airflow task per dbt model (run, then its tests), source freshness as
tasks, rendered from a dbt manifest built at image build / setup time (`LoadMode.DBT_MANIFEST`, never
`dbt ls` at parse time, and no dbt in the Airflow environment).

- kubernetes runtime: `ExecutionMode.KUBERNETES` in the transform image, every pod built from the
  shared definition in `datapipe.pods` (no profile mapping: dbt reads its credentials from the
  env the Secrets provide, through `profiles.yml`'s `env_var()`).
- local runtime: `ExecutionMode.LOCAL` with the transform venv's dbt and `dbt/profiles.yml`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, SourceRenderingBehavior, TestBehavior

from datapipe_dags.alerts import PipelineAlert
from datapipe_dags.config import ConfigError, Settings
from datapipe_dags.pods import RUN_ENV, pod_kwargs
from datapipe_dags.steps import Steps

GROUP_ID = "dbt"
# Environment of every dbt task, rendered per run: `--full-refresh` when the run is triggered with
# {"full_refresh": true} (after `extract accept-gap`, docs/extract.md); dbt reads DBT_FULL_REFRESH for
# the commands that take the flag (run, build) and ignores it for the others (test, source freshness).
# DATAPIPE_RUN_ID (the Airflow run id, as every step gets it: pods.RUN_ENV): dbt's on-run-end hook
# records each model's and test's result under it, and publish checks that run's results.
DBT_TASK_ENV = {"DBT_FULL_REFRESH": "{{ params.get('full_refresh', False) }}", **RUN_ENV}


def manifest_project_name(manifest: Path) -> str:
    if not manifest.is_file():
        raise ConfigError(
            f"dbt manifest not found at {manifest} (DATAPIPE_DBT_MANIFEST): build it first "
            "(`make dbt-manifest` locally; the datapipe-airflow image bakes it in)"
        )
    try:
        with manifest.open() as fh:
            name = json.load(fh)["metadata"]["project_name"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{manifest} is not a dbt manifest (metadata.project_name missing): {exc}") from None
    return str(name)


def local_profile(settings: Settings) -> ProfileConfig:
    """The dbt profile of the local runtime: dbt/profiles.yml (credentials via env_var())."""
    project_dir = Path(settings.dbt_project_dir)
    profiles = project_dir / "profiles.yml"
    project_file = project_dir / "dbt_project.yml"
    for path in (profiles, project_file):
        if not path.is_file():
            raise ConfigError(
                f"{path} not found (DATAPIPE_DBT_PROJECT_DIR={project_dir}): the local runtime runs dbt there"
            )
    profile = settings.dbt_profile or str(yaml.safe_load(project_file.read_text()).get("profile", ""))
    if not profile:
        raise ConfigError(f"{project_file} names no profile; set DATAPIPE_DBT_PROFILE")
    target = settings.dbt_target
    if not target:
        entry = (yaml.safe_load(profiles.read_text()) or {}).get(profile) or {}
        target = entry.get("target")
        if not target:
            raise ConfigError(f"{profiles} has no default target for profile {profile!r}; set DATAPIPE_DBT_TARGET")
    return ProfileConfig(profile_name=profile, target_name=str(target), profiles_yml_filepath=profiles)


def dbt_task_group(settings: Settings, steps: Steps, default_args: dict[str, Any],
                   load_method: LoadMode = LoadMode.DBT_MANIFEST) -> DbtTaskGroup:
    """The dbt task group. `load_method` exists for bench/dag.py's comparison with `dbt ls`
    (local runtime only); the DAG always renders from the manifest."""
    transform = steps.components["transform"]
    render = RenderConfig(
        load_method=load_method,
        test_behavior=TestBehavior.AFTER_EACH,
        source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
        # A test with several parents (relationships to dim_company) runs as its own task after all of
        # them; run eagerly with one parent's tests it would query a model not built yet on a fresh warehouse.
        should_detach_multiple_parents_tests=True,
        **({"dbt_executable_path": str(settings.dbt_executable), "invocation_mode": InvocationMode.SUBPROCESS}
           if load_method != LoadMode.DBT_MANIFEST else {}),
    )
    warning_alert = PipelineAlert(settings, warning=True)
    if settings.is_local:
        project = ProjectConfig(
            dbt_project_path=settings.dbt_project_dir,
            manifest_path=settings.dbt_manifest,
            install_dbt_deps=False,
            env_vars={"DATAPIPE_SYMBOLS": ",".join(settings.symbols), **DBT_TASK_ENV},
        )
        manifest_project_name(settings.dbt_manifest)
        return DbtTaskGroup(
            group_id=GROUP_ID,
            project_config=project,
            profile_config=local_profile(settings),
            execution_config=ExecutionConfig(
                execution_mode=ExecutionMode.LOCAL,
                invocation_mode=InvocationMode.SUBPROCESS,
                dbt_executable_path=str(settings.dbt_executable),
            ),
            render_config=render,
            operator_args={"append_env": True},
            on_warning_callback=warning_alert,
            default_args=default_args,
        )
    project = ProjectConfig(
        manifest_path=settings.dbt_manifest,
        project_name=manifest_project_name(settings.dbt_manifest),
        install_dbt_deps=False,
        # merged into each pod's env by Cosmos at execute time, after rendering
        env_vars=dict(DBT_TASK_ENV),
    )
    operator_args = {
        **pod_kwargs(settings, transform),
        # The image's command is replaced by `dbt <args>`; Cosmos fills the args at execute time.
        "cmds": ["dbt"],
    }
    return DbtTaskGroup(
        group_id=GROUP_ID,
        project_config=project,
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.KUBERNETES,
            dbt_project_path=settings.dbt_project_dir,
        ),
        render_config=render,
        operator_args=operator_args,
        on_warning_callback=warning_alert,
        default_args=default_args,
    )
