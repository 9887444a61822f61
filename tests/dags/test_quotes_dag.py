"""The market_quotes_intraday DAG (issue 20): off for free keys; for premium keys a schedule from the
quota planner that fires only during NYSE sessions (holidays and early closes dropped by check_poll_time),
no catch-up, one run at a time, a timeout of one interval, at most two pods, the steps of steps.toml;
and the daily build never selects the quotes models."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pendulum
import pytest
from airflow.timetables.base import DataInterval, TimeRestriction
from dagtest import base_env
from datapipe_common.calendar import NEW_YORK
from datapipe_dags.config import Settings
from datapipe_dags.dbt_group import QUOTES_SELECTOR
from datapipe_dags.quotes import build_market_quotes_intraday, is_poll_run
from datapipe_dags.steps import load_steps

PREMIUM = {"DATAPIPE_API_TIER": "premium"}


def build(**overrides: str) -> Any:
    return build_market_quotes_intraday(Settings.from_env(base_env(**overrides)))


def fire_times(dag: Any, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """The timetable's run instants in [start, end), in New York time."""
    times, last = [], None
    restriction = TimeRestriction(earliest=pendulum.instance(start), latest=pendulum.instance(end), catchup=True)
    while True:
        info = dag.timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if info is None or info.run_after >= end:
            return times
        times.append(info.run_after.in_timezone("America/New_York"))
        last = DataInterval(info.data_interval.start, info.data_interval.end)


def test_off_for_free_keys_and_says_why():
    dag = build()  # DATAPIPE_API_TIER defaults to free
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual runs only
    assert dag.is_paused_upon_creation is True
    assert "free key" in dag.doc_md and "25 requests a day" in dag.doc_md


def test_premium_schedule_polls_sessions_only_early_close_and_holiday_respected():
    dag = build(**PREMIUM, DATAPIPE_QUOTES_MIN_INTERVAL_MINUTES="15")
    assert dag.is_paused_upon_creation is False and dag.catchup is False and dag.max_active_runs == 1
    assert dag.dagrun_timeout == dt.timedelta(minutes=15)
    # Thanksgiving week 2026: Thursday closed, Friday closes at 13:00
    start = dt.datetime(2026, 11, 23, tzinfo=NEW_YORK)
    fires = fire_times(dag, start, start + dt.timedelta(days=7))
    kept = [t for t in fires if is_poll_run("scheduled", t, 15)[0]]
    by_day: dict[dt.date, list[str]] = {}
    for t in kept:
        by_day.setdefault(t.date(), []).append(t.strftime("%H:%M"))
    assert sorted(by_day) == [dt.date(2026, 11, 23), dt.date(2026, 11, 24), dt.date(2026, 11, 25),
                              dt.date(2026, 11, 27)]
    assert by_day[dt.date(2026, 11, 24)][0] == "09:30" and by_day[dt.date(2026, 11, 24)][-1] == "15:45"
    assert len(by_day[dt.date(2026, 11, 24)]) == 26
    assert by_day[dt.date(2026, 11, 27)][-1] == "12:45"  # early close
    # the cron fires Monday 23 to Friday 27 only, never on the weekend of the 28th and 29th
    assert {t.date() for t in fires} <= {dt.date(2026, 11, 23) + dt.timedelta(days=n) for n in range(5)}
    # the Thanksgiving fires and the Friday afternoon ones are skipped, with the reason
    go, why = is_poll_run("scheduled", dt.datetime(2026, 11, 26, 10, 0, tzinfo=NEW_YORK), 15)
    assert not go and "not during an NYSE session" in why
    assert is_poll_run("manual", dt.datetime(2026, 11, 26, 10, 0, tzinfo=NEW_YORK), 15)[0]


def test_a_daily_budget_stretches_the_interval():
    # 3 symbols, 75/min, 150 requests a day of which 6 are the daily DAG's: 144 / 3 = 48 polls at most
    dag = build(**PREMIUM, DATAPIPE_QUOTES_DAILY_BUDGET="150", DATAPIPE_QUOTES_MIN_INTERVAL_MINUTES="1")
    assert "every 10 min" in dag.doc_md and "stretched" in dag.doc_md
    # no poll fits at all: the DAG is off and says why
    off = build(**PREMIUM, DATAPIPE_QUOTES_DAILY_BUDGET="7")
    assert off.is_paused_upon_creation is True and "no poll fits" in off.doc_md


def test_two_pods_from_steps_toml_with_the_quotes_environment():
    dag = build(**PREMIUM, DATAPIPE_QUOTES_ENTITLEMENT="delayed", DATAPIPE_QUOTES_BULK="true")
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    pods = [t for t in dag.tasks if isinstance(t, KubernetesPodOperator)]
    assert [t.task_id for t in pods] == ["extract_quotes", "publish_quotes"]
    steps = load_steps()
    for pod in pods:
        assert [*pod.cmds, *pod.arguments] == list(steps[pod.task_id].command)
    env = {e.name: e.value for e in pods[0].env_vars}
    assert env["ALPHAVANTAGE_ENTITLEMENT"] == "delayed" and env["ALPHAVANTAGE_BULK_QUOTES"] == "true"
    assert pods[0].image.endswith("extract:1.2.3") and pods[1].image.endswith("transform:1.2.3")
    assert sorted(t.task_id for t in dag.tasks) == ["check_poll_time", "extract_quotes", "publish_quotes"]
    assert dag.get_task("check_poll_time").downstream_task_ids == {"extract_quotes"}
    assert pods[0].downstream_task_ids == {"publish_quotes"}


def test_the_daily_build_never_selects_the_quotes_models(k8s_dag):
    assert steps_command("dbt_build")[-2:] == ("--exclude", QUOTES_SELECTOR)
    # the daily DAG's Cosmos group renders no quotes model, test or source
    quotes_nodes = ("stg_alphavantage__quotes", "stg_alphavantage__intraday_bars", "fct_live_quotes",
                    "fct_intraday_bars", "alphavantage_live")
    assert not [t.task_id for t in k8s_dag.tasks if any(n in t.task_id for n in quotes_nodes)]


def steps_command(name: str) -> tuple[str, ...]:
    return load_steps()[name].command


@pytest.mark.parametrize("tier", ["banana", "PREMIUMX"])
def test_a_bad_tier_is_a_config_error(tier):
    from datapipe_common.config import ConfigError

    with pytest.raises(ConfigError, match="DATAPIPE_API_TIER"):
        Settings.from_env(base_env(DATAPIPE_API_TIER=tier))
