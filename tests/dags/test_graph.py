"""The task graph: source freshness as one task, then Cosmos' watcher execution - one `dbt build`
(the producer) and one task per dbt model (plus its tests) in dependency order, reading its node's
result - between the extraction and the quality gate; publishing strictly after the gate."""

from __future__ import annotations

from typing import Any

import pytest
from calendar_cases import CASE_IDS, CASES, CalendarCase
from datapipe_dags.pipeline import DAG_ID, is_session_run, wants_company_refresh


def upstream_ids(dag: Any, task_id: str) -> set[str]:
    return {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=True)}


def nodes_with_tests(manifest: dict[str, Any]) -> set[str]:
    return {
        dep
        for node in manifest["nodes"].values() if node["resource_type"] == "test"
        for dep in node["depends_on"]["nodes"]
    }


def model_tasks(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per model: the Cosmos task ids expected for it (run, and test when the model has tests)."""
    tested = nodes_with_tests(manifest)
    out = {}
    for uid, node in manifest["nodes"].items():
        if node["resource_type"] != "model":
            continue
        name = node["name"]
        if uid in tested:
            out[uid] = {"name": name, "run": f"dbt.{name}.run", "test": f"dbt.{name}.test", "last": f"dbt.{name}.test"}
        else:
            out[uid] = {"name": name, "run": f"dbt.{name}_run", "test": None, "last": f"dbt.{name}_run"}
    return out


def serialized(dag: Any) -> Any:
    """The DAG as the scheduler sees it (what the dag processor stores)."""
    from airflow.serialization.serialized_objects import DagSerialization

    return DagSerialization.from_dict(DagSerialization.to_dict(dag))


def test_dag_basics(k8s_dag: Any) -> None:
    dag = serialized(k8s_dag)
    assert dag.dag_id == DAG_ID
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.timetable.summary == "30 17 * * 1-5"
    assert set(dag.task_ids) == set(k8s_dag.task_ids)


def test_schedule_is_weekdays_after_the_us_close(k8s_dag: Any) -> None:
    import pendulum

    tt = serialized(k8s_dag).timetable
    # Friday 2026-11-27 -> next run Friday 17:30 New York; after it, Monday (no weekend runs).
    start = pendulum.datetime(2026, 11, 27, 12, 0, tz="America/New_York")
    fires = []
    last = None
    from airflow.timetables.base import TimeRestriction

    for _ in range(3):
        info = tt.next_dagrun_info(last_automated_data_interval=last,
                                   restriction=TimeRestriction(earliest=start, latest=None, catchup=True))
        assert info is not None
        fires.append(info.logical_date.in_timezone("America/New_York"))
        last = info.data_interval
    assert [d.strftime("%a %H:%M") for d in fires] == ["Fri 17:30", "Mon 17:30", "Tue 17:30"]


PRODUCER = "dbt.dbt_producer_watcher"
PRODUCER_DONE = "dbt.dbt_producer_watcher_done"


def test_one_task_per_model_and_its_tests(k8s_dag: Any, manifest: dict[str, Any]) -> None:
    expected = model_tasks(manifest)
    dbt_ids = {t for t in k8s_dag.task_ids if t.startswith("dbt.")}
    wanted = {m["run"] for m in expected.values()} | {m["test"] for m in expected.values() if m["test"]}
    assert wanted <= dbt_ids
    kinds = {t: type(k8s_dag.get_task(t)).__name__ for t in dbt_ids}
    for m in expected.values():
        assert kinds[m["run"]] == "DbtRunWatcherKubernetesOperator"
        if m["test"]:
            assert kinds[m["test"]] == "DbtTestWatcherKubernetesOperator"
            assert upstream_ids(k8s_dag, m["test"]) >= {m["run"]}
    # nothing else than model run/test tasks, multi-parent test tasks and the one producer (+ its gate)
    assert dbt_ids - wanted == set(detached_tests(manifest)) | {PRODUCER, PRODUCER_DONE}
    assert kinds[PRODUCER] == "DbtProducerWatcherKubernetesOperator"


@pytest.mark.parametrize("runtime", ["kubernetes", "local"])
def test_one_dbt_build_then_every_model_task_reads_its_result(build_dag: Any, runtime: str) -> None:
    """The producer runs first; every model task comes after it (directly or through its parents),
    so each reads a finished result. A root model task runs when the producer succeeded or was
    skipped (dbt's exit code 1: nodes failed), never when it failed or did not run."""
    overrides = {"DATAPIPE_RUNTIME": runtime}
    if runtime == "local":
        from dagtest import DBT_PROJECT

        overrides["DATAPIPE_DBT_PROJECT_DIR"] = str(DBT_PROJECT)
    dag = build_dag(**overrides)
    producer = dag.get_task(PRODUCER)
    expected_class = {"kubernetes": "DbtProducerWatcherKubernetesOperator", "local": "DbtProducerWatcherOperator"}
    assert type(producer).__name__ == expected_class[runtime]
    assert producer.upstream_task_ids == {"dbt_source_freshness"}
    if runtime == "local":
        assert producer.skip_exit_code == 1
    else:
        assert list(producer.skip_on_exit_code) == [1]
    dbt_ids = {t for t in dag.task_ids if t.startswith("dbt.")} - {PRODUCER, PRODUCER_DONE}
    roots = {t for t in dbt_ids if not dag.get_task(t).upstream_task_ids - {PRODUCER}}
    assert roots and all(dag.get_task(t).upstream_task_ids == {PRODUCER} for t in roots)
    assert all(str(dag.get_task(t).trigger_rule) in ("none_failed", "TriggerRule.NONE_FAILED") for t in roots)
    for t in dbt_ids - roots:
        assert PRODUCER in upstream_ids(dag, t), t
        assert str(dag.get_task(t).trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS"), t
    # the only dbt processes of a run: the freshness task and the producer (model tasks are sensors)
    from airflow.sdk import BaseSensorOperator

    assert all(isinstance(dag.get_task(t), BaseSensorOperator) for t in dbt_ids)


def detached_tests(manifest: dict[str, Any]) -> dict[str, list[str]]:
    """Tests with several parent models (relationships): task id -> parent model ids."""
    return {f"dbt.{n['name']}_test": n["depends_on"]["nodes"] for n in manifest["nodes"].values()
            if n["resource_type"] == "test" and len(n["depends_on"]["nodes"]) > 1}


def test_multi_parent_tests_run_after_all_their_parents(k8s_dag: Any, manifest: dict[str, Any]) -> None:
    """A relationships test runs once every model it reads is built and tested (never half-built)."""
    models = model_tasks(manifest)
    detached = detached_tests(manifest)
    assert len(detached) >= 3
    for task_id, parents in detached.items():
        task = k8s_dag.get_task(task_id)
        assert type(task).__name__ == "DbtTestWatcherKubernetesOperator"
        ancestors = upstream_ids(k8s_dag, task_id)
        for parent in parents:
            assert models[parent]["last"] in ancestors, (task_id, parent)
        # and the single-parent test tasks exclude it, so it does not run early
        for parent in parents:
            if models[parent]["test"]:
                assert task.select in (k8s_dag.get_task(models[parent]["test"]).exclude or ""), (task_id, parent)


def test_models_run_in_dependency_order(k8s_dag: Any, manifest: dict[str, Any]) -> None:
    expected = model_tasks(manifest)
    checked = 0
    for uid, m in expected.items():
        parents = [p for p in manifest["nodes"][uid]["depends_on"]["nodes"] if p in expected]
        ancestors = upstream_ids(k8s_dag, m["run"])
        for parent in parents:
            # the parent model is built AND tested before the child model runs
            assert expected[parent]["last"] in ancestors, (m["run"], expected[parent]["last"])
            checked += 1
    assert checked >= 5


def test_source_freshness_is_one_task_before_the_build(k8s_dag: Any, manifest: dict[str, Any]) -> None:
    """One `dbt source freshness` for every source, after the extraction and before the producer: a
    stale source (its error threshold) fails it, and the build and every model task never run."""
    task = k8s_dag.get_task("dbt_source_freshness")
    assert type(task).__name__ == "KubernetesPodOperator"
    assert [*task.cmds, *task.arguments] == ["dbt", "source", "freshness"]
    assert task.upstream_task_ids == {"extracted"}
    assert task.downstream_task_ids == {PRODUCER}
    assert str(task.trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS")
    assert str(k8s_dag.get_task(PRODUCER).trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS")
    dbt_ids = {t for t in k8s_dag.task_ids if t.startswith("dbt.")}
    assert all("dbt_source_freshness" in upstream_ids(k8s_dag, t) for t in dbt_ids)
    assert not any(t.endswith(("_source", ".source")) for t in k8s_dag.task_ids)
    with_freshness = [s for s in manifest["sources"].values()
                      if ((s.get("freshness") or {}).get("error_after") or {}).get("count")]
    assert len(with_freshness) == 2


def test_dbt_group_sits_between_extraction_and_gate_and_publish_follows_the_gate(k8s_dag: Any) -> None:
    dag = k8s_dag
    dbt_ids = {t for t in dag.task_ids if t.startswith("dbt.")}
    gate_upstream = upstream_ids(dag, "quality_gate")
    assert dbt_ids <= gate_upstream
    for t in dbt_ids:
        assert {"extract_prices", "extracted", "dbt_source_freshness"} <= upstream_ids(dag, t)
    assert dag.get_task("publish_marts").upstream_task_ids == {"quality_gate"}
    assert dbt_ids | {"quality_gate", "extract_prices"} <= upstream_ids(dag, "publish_marts")
    assert dag.get_task("grant_reader").upstream_task_ids == {"publish_marts"}
    # publish never runs unless the gate succeeded (default trigger rule)
    assert str(dag.get_task("publish_marts").trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS")
    assert str(dag.get_task("quality_gate").trigger_rule) in ("all_success", "TriggerRule.ALL_SUCCESS")


def test_company_refresh_branch(k8s_dag: Any) -> None:
    """The weekly refresh asks every overview; every other run asks the tracked symbols that have none
    yet (a symbol added mid-week is published the same day, issue 14), never nothing."""
    from datapipe_dags.steps import load_steps

    branches = {"extract_companies", "extract_missing_companies"}
    assert k8s_dag.get_task("check_company_refresh").downstream_task_ids == branches
    assert k8s_dag.get_task("extracted").upstream_task_ids == {"extract_prices", *branches}
    steps = load_steps()
    assert steps["extract_missing_companies"].command == ("extract", "companies", "--missing")
    assert steps["extract_companies"].command == ("extract", "companies")


def test_the_session_check_comes_first_and_skips_everything(k8s_dag: Any) -> None:
    check = k8s_dag.get_task("check_session")
    assert check.downstream_task_ids == {"check_company_refresh", "extract_prices"}
    assert check.ignore_downstream_trigger_rules  # also skips `extracted` (none_failed_min_one_success)
    assert {t.task_id for t in k8s_dag.tasks if not t.upstream_task_ids} == {"check_session"}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("run_type", ["scheduled", "backfill"])
def test_scheduled_runs_go_ahead_on_sessions_only(case: CalendarCase, run_type: str) -> None:
    import pendulum

    go, why = is_session_run(run_type, pendulum.instance(case.at))
    assert go is case.is_session, why
    assert (str(case.run_day) in why) and (("not an NYSE session" in why) is not case.is_session)


def test_manual_runs_always_go_ahead() -> None:
    import pendulum
    from airflow.utils.types import DagRunType

    thanksgiving = pendulum.datetime(2026, 11, 26, 22, 30, tz="UTC")
    assert is_session_run(DagRunType.MANUAL, thanksgiving)[0]
    assert is_session_run("manual", None)[0]
    assert not is_session_run(DagRunType.SCHEDULED, thanksgiving)[0]


@pytest.mark.parametrize(
    ("day", "params", "previous", "expected"),
    [
        ("2026-11-23", {}, "2026-11-20", True),    # Monday: the week's first session
        ("2026-11-24", {}, "2026-11-23", False),   # Tuesday with an earlier success: skip
        ("2026-01-20", {}, "2026-01-16", True),    # Tuesday after Martin Luther King Jr. Day: first session
        ("2026-04-06", {}, "2026-04-02", True),    # Monday after Good Friday
        ("2026-11-26", {}, "2026-11-25", False),   # Thanksgiving: no session
        ("2026-11-24", {}, None, True),            # first successful run ever: refresh
        ("2026-11-25", {"refresh_companies": True}, "2026-11-24", True),
    ],
)
def test_wants_company_refresh(day: str, params: dict, previous: str | None, expected: bool) -> None:
    import lazy_object_proxy
    import pendulum

    logical = pendulum.parse(f"{day}T22:30:00Z")
    prev = pendulum.parse(previous) if previous else None
    assert wants_company_refresh(logical, params, prev) is expected
    # Airflow 3 hands the task context's prev_start_date_success over as a lazy proxy
    proxied = lazy_object_proxy.Proxy(lambda: prev)
    assert wants_company_refresh(logical, params, proxied) is expected


def test_a_failed_or_timed_out_run_alerts(k8s_dag: Any, build_dag: Any) -> None:
    from datetime import timedelta

    from datapipe_dags.alerts import RunAlert

    callbacks = k8s_dag.on_failure_callback
    assert [type(c) for c in (callbacks if isinstance(callbacks, list) else [callbacks])] == [RunAlert]
    assert k8s_dag.dagrun_timeout == timedelta(hours=3)
    assert build_dag(DATAPIPE_DAGRUN_TIMEOUT_MINUTES="45").dagrun_timeout == timedelta(minutes=45)


def test_every_task_alerts_and_retries_with_backoff(k8s_dag: Any) -> None:
    from datapipe_dags.alerts import PipelineAlert

    for task in k8s_dag.tasks:
        if task.task_id in ("check_session", "check_company_refresh"):
            continue
        callbacks = task.on_failure_callback
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        assert any(isinstance(c, PipelineAlert) for c in callbacks), task.task_id
        assert task.retries == 3, task.task_id
        assert task.retry_exponential_backoff == 2.0, task.task_id
        assert task.max_retry_delay is not None, task.task_id


@pytest.mark.parametrize("runtime", ["kubernetes", "local"])
def test_dbt_warnings_alert_from_the_freshness_task_and_the_producer_only(build_dag: Any, runtime: str) -> None:
    """Watcher tasks have no warning callback: the warnings of a run alert from dbt's recorded
    results, after the freshness check (its sources) and after the build (its tests), nowhere else."""
    from dagtest import DBT_PROJECT
    from datapipe_dags.alerts import PipelineAlert

    dag = build_dag(DATAPIPE_RUNTIME="local", DATAPIPE_DBT_PROJECT_DIR=str(DBT_PROJECT)) if runtime == "local" \
        else build_dag()

    def warning_alerts(callbacks: Any) -> list[Any]:
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        return [c for c in callbacks if isinstance(c, PipelineAlert) and c.warning]

    senders = {(task.task_id, when) for task in dag.tasks
               for when in ("on_success_callback", "on_skipped_callback", "on_failure_callback")
               if warning_alerts(getattr(task, when, None))}
    assert senders == {("dbt_source_freshness", "on_success_callback"), (PRODUCER, "on_success_callback"),
                       (PRODUCER, "on_skipped_callback")}, senders
