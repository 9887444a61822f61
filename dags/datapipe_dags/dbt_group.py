"""The Cosmos task group: one Airflow task per dbt model (and one for its tests), rendered from a dbt
manifest built at image build / setup time (`LoadMode.DBT_MANIFEST`, never `dbt ls` at parse time,
and no dbt in the Airflow environment), run by Cosmos' watcher execution: **one `dbt build` per run**.

- `dbt_producer_watcher` runs that build (dbt threads: DATAPIPE_DBT_THREADS). Every model task and
  test task reads its node's result from the producer (a sensor, no dbt process of its own) and
  fails when its node failed, so the DAG still shows, fails and blocks per model. A retried (or
  cleared) model or test task runs dbt for that node alone.
- kubernetes runtime: `ExecutionMode.WATCHER_KUBERNETES`; the producer is one pod built from the
  shared definition in `datapipe_dags.pods` (no profile mapping: dbt reads its credentials from the
  env the Secrets provide, through `profiles.yml`'s `env_var()`), and so is the pod of a retried task.
- local runtime: `ExecutionMode.WATCHER` with the transform venv's dbt and `dbt/profiles.yml`.

Source freshness is not part of the group: it is one task before it (`dbt_source_freshness`,
datapipe_dags.pipeline), so a stale source stops the build.

Wiring the producer: Cosmos leaves a task group's producer beside its model tasks, which then
watch it while it runs. Here the producer comes first and the root model tasks after it: they read
finished results (the DAG also runs serially under `airflow dags test`), and the freshness task in
front of the group gates the producer and, through it, every model task. dbt's exit code 1 (nodes
failed; dbt ran to the end) *skips* the producer, so its failed nodes fail their own tasks only;
any other failure of the producer (dbt could not run at all) fails it and everything after it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from airflow.task.trigger_rule import TriggerRule
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    PRODUCER_WATCHER_DONE_TASK_ID,
    PRODUCER_WATCHER_TASK_ID,
    ExecutionMode,
    InvocationMode,
    LoadMode,
    SourceRenderingBehavior,
    TestBehavior,
)

from datapipe_dags.config import ConfigError, Settings
from datapipe_dags.pods import RUN_ENV, plain_env, pod_kwargs
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


# dbt exits 1 when nodes failed (the build ran to its end) and 2 when it could not run at all.
DBT_NODES_FAILED_EXIT_CODE = 1


def render_config(settings: Settings, load_method: LoadMode) -> RenderConfig:
    return RenderConfig(
        load_method=load_method,
        test_behavior=TestBehavior.AFTER_EACH,
        # freshness is one task before the group (datapipe_dags.pipeline), not one per source
        source_rendering_behavior=SourceRenderingBehavior.NONE,
        # A test with several parents (relationships to dim_company) gets its own task after all of them.
        should_detach_multiple_parents_tests=True,
        **({"dbt_executable_path": str(settings.dbt_executable), "invocation_mode": InvocationMode.SUBPROCESS}
           if load_method != LoadMode.DBT_MANIFEST else {}),
    )


def dbt_task_group(settings: Settings, steps: Steps, default_args: dict[str, Any],
                   load_method: LoadMode = LoadMode.DBT_MANIFEST) -> DbtTaskGroup:
    """The dbt task group. `load_method` exists for bench/dag.py's comparison with `dbt ls`
    (local runtime only); the DAG always renders from the manifest."""
    transform = steps.components["transform"]
    render = render_config(settings, load_method)
    if settings.is_local:
        project = ProjectConfig(
            dbt_project_path=settings.dbt_project_dir,
            manifest_path=settings.dbt_manifest,
            install_dbt_deps=False,
            env_vars={**plain_env(settings, transform, pod=False), **DBT_TASK_ENV},
        )
        manifest_project_name(settings.dbt_manifest)
        group = DbtTaskGroup(
            group_id=GROUP_ID,
            project_config=project,
            profile_config=local_profile(settings),
            execution_config=ExecutionConfig(
                execution_mode=ExecutionMode.WATCHER,
                invocation_mode=InvocationMode.SUBPROCESS,
                dbt_executable_path=str(settings.dbt_executable),
                setup_operator_args={"skip_exit_code": DBT_NODES_FAILED_EXIT_CODE},
            ),
            render_config=render,
            operator_args={"append_env": True},
            default_args=default_args,
        )
        return producer_first(group)
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
    group = DbtTaskGroup(
        group_id=GROUP_ID,
        project_config=project,
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER_KUBERNETES,
            dbt_project_path=settings.dbt_project_dir,
            setup_operator_args={"skip_on_exit_code": DBT_NODES_FAILED_EXIT_CODE},
        ),
        render_config=render,
        operator_args=operator_args,
        default_args=default_args,
    )
    return producer_first(group)


def producer_task(group: DbtTaskGroup) -> Any:
    """The group's watcher producer: the run's one `dbt build`."""
    return next(task for task in group.iter_tasks() if task.task_id == f"{GROUP_ID}.{PRODUCER_WATCHER_TASK_ID}")


def producer_first(group: DbtTaskGroup) -> DbtTaskGroup:
    """Put the producer before the group's root model tasks (see the module docstring); a root runs
    when the producer succeeded or was skipped (nodes failed), not when it failed or never ran."""
    tasks = {task.task_id: task for task in group.iter_tasks()}
    producer = producer_task(group)
    done = f"{GROUP_ID}.{PRODUCER_WATCHER_DONE_TASK_ID}"
    for task_id, task in tasks.items():
        if task is producer or task_id == done or set(task.upstream_task_ids) & set(tasks):
            continue
        producer >> task
        task.trigger_rule = TriggerRule.NONE_FAILED
    return group
