# Airflow 3 + Cosmos: the DAGs in dags/ (venv `airflow`: no dbt, no GX), local runs, the UI, tests.
AIRFLOW_VENV       := $(VENVS)/airflow/.datapipe-synced
AIRFLOW_LOCAL_HOME ?= $(LOCAL)/airflow
VENV_TARGETS += $(AIRFLOW_VENV)
TEST_TARGETS += test-dags
LOCK_TARGETS += lock-dags

$(AIRFLOW_VENV): dags/requirements.lock dags/requirements-test.lock | $(UV)
	@scripts/sync-venv $(VENVS)/airflow dags/requirements.lock dags/requirements-test.lock

.PHONY: lock-dags
lock-dags: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) dags/requirements.in -o dags/requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) -c dags/requirements.lock dags/requirements-test.in -o dags/requirements-test.lock

##@ Test

.PHONY: test-dags
test-dags: $(AIRFLOW_VENV) $(WAREHOUSE_VENV) ## DAG tests: DagBag, task graph, pod specs (strict schema), alerts, local runs
	@$(VENVS)/airflow/bin/python -m pytest tests/dags

.PHONY: bench-dag
bench-dag: $(AIRFLOW_VENV) ## Benchmark: DAG parse time (manifest vs dbt ls) and the local `make run` time
	@$(VENVS)/airflow/bin/python bench/dag.py
