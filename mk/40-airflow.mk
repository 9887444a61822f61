# Airflow 3 + Cosmos: the DAGs in dags/ (venv `airflow`: no dbt, no GX), local runs, the UI, tests.
AIRFLOW_VENV       := $(VENVS)/airflow/.datapipe-synced
AIRFLOW_LOCAL_HOME ?= $(LOCAL)/airflow
VENV_TARGETS += $(AIRFLOW_VENV)
TEST_TARGETS += test-dags
LOCK_TARGETS += lock-dags

$(AIRFLOW_VENV): dags/requirements.lock dags/requirements-test.lock $(COMMON_DEPS) scripts/sync-venv | $(UV)
	@scripts/sync-venv $(VENVS)/airflow dags/requirements.lock dags/requirements-test.lock -- $(COMMON)

.PHONY: lock-dags
lock-dags: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) dags/requirements.in -o dags/requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) -c dags/requirements.lock dags/requirements-test.in -o dags/requirements-test.lock

##@ Test

.PHONY: test-dags
test-dags: $(AIRFLOW_VENV) $(WAREHOUSE_VENV) $(EXTRACT_VENV) $(TRANSFORM_VENV) $(DBT_MANIFEST) ## DAG tests: DagBag, task graph, pod specs (strict schema), alerts, real local DAG runs
	@$(MAKE) -s --no-print-directory $(HELM)
	@$(VENVS)/airflow/bin/python -m pytest tests/dags --basetemp=$(LOCAL)/pytest-dags $(PYTEST_ARGS)

.PHONY: bench-dag
bench-dag: $(AIRFLOW_VENV) $(TRANSFORM_VENV) $(DBT_MANIFEST) ## Benchmark: DAG parse time, `make run`; BENCH_ARGS="--vs-pipeline main": DAG run vs bare pipeline, before/after
	@$(VENVS)/airflow/bin/python bench/dag.py $(BENCH_ARGS)

##@ Local

# `make run RUN_DATE=2026-11-25T22:30:00+00:00 RUN_CONF='{"refresh_companies": true}'`
RUN_DATE ?=
RUN_CONF ?=
# Everything a local DAG run executes: the step venvs and the dbt manifest the DAG renders from.
AIRFLOW_RUN_DEPS = $(AIRFLOW_VENV) $(EXTRACT_VENV) $(TRANSFORM_VENV) $(DBT_MANIFEST)

.PHONY: run
run: db-up ## Run the DAG once for real (local runtime, embedded warehouse, sandbox API unless ALPHAVANTAGE_* set); exit code = run state
	@$(MAKE) $(AIRFLOW_RUN_DEPS)
	@if [ -z "$${ALPHAVANTAGE_BASE_URL:-}" ] && [ -z "$${ALPHAVANTAGE_API_KEY:-}" ]; then $(MAKE) sandbox-up; fi
	@RUN_DATE='$(RUN_DATE)' RUN_CONF='$(RUN_CONF)' $(PY) scripts/airflow-local run

.PHONY: airflow
airflow: db-up ## Local Airflow (standalone, local runtime) with the UI on http://localhost:8080; prints the login
	@$(MAKE) $(AIRFLOW_RUN_DEPS)
	@if [ -z "$${ALPHAVANTAGE_BASE_URL:-}" ] && [ -z "$${ALPHAVANTAGE_API_KEY:-}" ]; then $(MAKE) sandbox-up; fi
	@$(PY) scripts/airflow-local standalone
