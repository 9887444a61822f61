"""Publish requires that every dbt check passed for what it publishes (issue 14, item 4): dbt records
its results per node in ops (an on-run-end hook, whatever runs dbt), and `quality publish` refuses,
with a one-line reason and a non-zero exit, unless the latest result of every model and test of the
run passed, the gate passed after the last dbt result, and the audit is what the gate saw. The marts
are unchanged (row checksums) after any refusal. Real dbt, GX and PostgreSQL on sandbox data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chain import AS_OF, Chain, StepResult, start_sandbox
from conftest import TestWarehouse

pytestmark = pytest.mark.slow

SYMBOLS = ("AAPL", "IBM")


def refused(result: StepResult) -> str:
    """The refusal's reason: one line on stderr, exit code non-zero."""
    assert result.returncode == 1, result.output[-3000:]
    lines = [line for line in result.output.splitlines() if line.startswith("PUBLISH REFUSED")]
    assert len(lines) == 1, result.output[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def published(warehouse: TestWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    warehouse.psql("create database checks_base owner pipeline", admin=True)
    chain = Chain(warehouse, "checks_base", tmp_path_factory.mktemp("checks"),
                  extra_env={"DATAPIPE_SYMBOLS": ",".join(SYMBOLS)})
    sandbox = start_sandbox("--as-of", AS_OF.isoformat())
    try:
        chain.extract(sandbox)
    finally:
        sandbox.process.terminate()
        sandbox.process.wait(timeout=10)
    for step in ("dbt_build", "quality_gate", "publish_marts"):
        chain.outputs[step] = chain.step(step, DATAPIPE_RUN_ID="baseline").check().output
    yield chain


def test_dbt_results_are_recorded_per_node_with_the_run_id(published: Chain) -> None:
    nodes = published.scalar("select count(*) from ops.dbt_run_nodes where run_id = 'baseline'")
    manifest_nodes = published.scalar(
        "select count(distinct unique_id) from ops.dbt_results where run_id = 'baseline'")
    assert nodes == manifest_nodes and int(nodes) > 30  # type: ignore[call-overload]
    statuses = dict(published.query("select resource_type, string_agg(distinct status, ',') from ops.dbt_results"
                                    " where run_id = 'baseline' group by 1"))
    assert statuses == {"model": "success", "test": "pass"}
    assert "dbt: every model and test of run baseline passed" in published.outputs["publish_marts"]


def test_a_failed_dbt_test_then_a_manual_gate_and_publish_publishes_nothing(published: Chain, tmp_path: Path) -> None:
    chain = published.clone(tmp_path)
    marts, publishes = chain.marts_state(), chain.publish_count()
    # a bar whose open is below its low: dbt's `low <= least(open, close)` test fails; the gate does not
    # check that invariant, so only dbt's verdict stands between this bar and the marts
    chain.query("""insert into raw.time_series_daily (run_id, symbol, function, output_size, request_url,
                       requested_at, received_at, payload_sha256, payload)
                   select run_id, symbol, function, output_size, request_url, now(), now(), md5(random()::text),
                          jsonb_set(payload, '{Time Series (Daily),2025-06-12,1. open}', '"0.0100"')
                   from raw.time_series_daily where symbol = 'IBM' order by payload_id desc limit 1
                   returning 1""")
    build = chain.step("dbt_build", DATAPIPE_RUN_ID="run-with-a-failed-test")
    assert build.returncode != 0 and "Failure in test fct_daily_prices_low_le_open_close" in build.output
    # an operator retries the gate (or marks the failed test task successful in Airflow): it passes ...
    chain.step("quality_gate", DATAPIPE_RUN_ID="run-with-a-failed-test").check()
    # ... and publish still refuses, naming the failed test
    reason = refused(chain.step("publish_marts", DATAPIPE_RUN_ID="run-with-a-failed-test"))
    assert "test.datapipe.fct_daily_prices_low_le_open_close" in reason and "fail" in reason
    assert "run-with-a-failed-test" in reason
    assert chain.marts_state() == marts and chain.publish_count() == publishes
    assert str(chain.scalar("select status from ops.publish_history order by publish_id desc limit 1")).startswith(
        "refused: dbt")
    # without a run id (a standalone `quality publish`) the newest dbt results are the run: same verdict
    assert "fct_daily_prices_low_le_open_close" in refused(chain.step("publish_marts"))
    assert chain.marts_state() == marts


def test_a_retried_model_that_then_passes_can_be_published(published: Chain, tmp_path: Path) -> None:
    chain = published.clone(tmp_path)
    marts = chain.marts_state()
    run = {"DATAPIPE_RUN_ID": "run-with-a-retry"}
    # a column the staging model reads and no source test checks is away: the model errors (a transient
    # fault, as a lost connection would be), the source's tests pass
    chain.query("alter table raw.company_overview rename column received_at to received_at_away")
    first = chain.step("dbt_build", **run)
    assert first.returncode != 0
    chain.query("alter table raw.company_overview rename column received_at_away to received_at")
    # the model failed, its descendants were skipped: nothing to publish yet
    reason = refused(chain.step("publish_marts", **run))
    assert "model.datapipe.stg_alphavantage__company_overview (error)" in reason
    assert chain.marts_state() == marts
    # the retry (as Airflow retries the task): the model and what it feeds, same run
    chain.step("dbt_build", "--select", "stg_alphavantage__company_overview+", **run).check()
    history = [r[0] for r in chain.query(
        "select status from ops.dbt_results where run_id = 'run-with-a-retry'"
        " and unique_id = 'model.datapipe.stg_alphavantage__company_overview' order by result_id")]
    assert history == ["error", "success"]
    # the gate must come after the last dbt result
    reason = refused(chain.step("publish_marts", **run))
    assert "gate" in reason and "after" in reason
    chain.step("quality_gate", **run).check()
    published_now = chain.step("publish_marts", **run).check()
    assert "dbt: every model and test of run run-with-a-retry passed" in published_now.output
    assert chain.publish_count() == published.publish_count() + 1


def test_dbt_running_again_after_the_gate_needs_a_new_gate(published: Chain, tmp_path: Path) -> None:
    chain = published.clone(tmp_path)
    marts, publishes = chain.marts_state(), chain.publish_count()
    run = {"DATAPIPE_RUN_ID": "run-tested-after-the-gate"}
    chain.step("dbt_build", **run).check()
    chain.step("quality_gate", **run).check()
    chain.step("dbt_build", "--select", "dim_company", **run).check()  # after the gate: audit rebuilt
    reason = refused(chain.step("publish_marts", **run))
    assert "after" in reason and "quality gate" in reason
    assert chain.marts_state() == marts and chain.publish_count() == publishes
