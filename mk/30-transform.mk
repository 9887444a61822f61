# The transform component: dbt project (dbt/) + the `quality` package (dbt/quality/): GX gate,
# write-audit-publish, reader grants. One lock (dbt/requirements.lock) shared by the
# datapipe-transform image and the local venv `transform`.
TRANSFORM_VENV   := $(VENVS)/transform/.datapipe-synced
TRANSFORM_BIN    := $(VENVS)/transform/bin
DBT_MANIFEST     := $(ROOT)/dbt/target/manifest.json
DBT_SOURCES      := $(shell find $(ROOT)/dbt/models $(ROOT)/dbt/macros $(ROOT)/dbt/tests -type f 2>/dev/null) \
                    $(ROOT)/dbt/dbt_project.yml $(ROOT)/dbt/profiles.yml
VENV_TARGETS     += $(TRANSFORM_VENV)
TEST_TARGETS     += test-transform
LOCK_TARGETS     += lock-transform

# (scripts/sync-venv compiles bytecode at install: dbt and GX import thousands of modules)
$(TRANSFORM_VENV): dbt/requirements.lock dbt/requirements-test.lock dbt/quality/pyproject.toml $(COMMON_DEPS) scripts/sync-venv | $(UV)
	@scripts/sync-venv $(VENVS)/transform dbt/requirements.lock dbt/requirements-test.lock -- $(COMMON) dbt/quality

.PHONY: lock-transform
lock-transform: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) dbt/quality/pyproject.toml -o dbt/requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) -c dbt/requirements.lock dbt/requirements-test.in -o dbt/requirements-test.lock

# dbt parse needs no database: placeholder libpq values keep env_var() happy at setup/build time.
DBT_PARSE_ENV := DBT_PROFILES_DIR=. DBT_PROJECT_DIR=. PGHOST=$${PGHOST:-localhost} PGPORT=$${PGPORT:-5432} \
  PGDATABASE=$${PGDATABASE:-warehouse} PGUSER=$${PGUSER:-pipeline} PGPASSWORD=$${PGPASSWORD:-unused} \
  PGSSLMODE=$${PGSSLMODE:-disable}

$(DBT_MANIFEST): $(TRANSFORM_VENV) $(DBT_SOURCES)
	@cd dbt && env $(DBT_PARSE_ENV) $(TRANSFORM_BIN)/dbt parse --quiet --no-partial-parse
	@echo "==> dbt manifest: dbt/target/manifest.json"

##@ Local

.PHONY: dbt-manifest
dbt-manifest: $(DBT_MANIFEST) ## Parse the dbt project into dbt/target/manifest.json (read by the Airflow DAG)

.PHONY: pipeline
pipeline: db-up $(TRANSFORM_VENV) $(EXTRACT_VENV) ## Run the whole pipeline locally: extract (sandbox unless a real API is configured), dbt build, gate, publish
	@if [ -z "$${ALPHAVANTAGE_BASE_URL:-}" ] && [ -z "$${ALPHAVANTAGE_API_KEY:-}" ]; then $(MAKE) sandbox-up; fi
	@set -a; . $(WAREHOUSE_ENV); \
	  if [ -z "$${ALPHAVANTAGE_BASE_URL:-}" ] && [ -z "$${ALPHAVANTAGE_API_KEY:-}" ] && [ -f $(LOCAL)/sandbox.env ]; then . $(LOCAL)/sandbox.env; fi; \
	  set +a; $(PY) scripts/run-step --pipeline

# Live quotes: ALPHAVANTAGE_ENTITLEMENT for `make quotes` when it is not set (realtime or delayed).
QUOTES_ENTITLEMENT ?= realtime

.PHONY: quotes
quotes: db-up $(TRANSFORM_VENV) $(EXTRACT_VENV) ## One live-prices poll (the market_quotes_intraday DAG's steps): extract quotes + publish-quotes; the change needs `make pipeline` first
	@if [ -z "$${ALPHAVANTAGE_BASE_URL:-}" ] && [ -z "$${ALPHAVANTAGE_API_KEY:-}" ]; then $(MAKE) sandbox-up; fi
	@set -a; . $(WAREHOUSE_ENV); \
	  if [ -z "$${ALPHAVANTAGE_BASE_URL:-}" ] && [ -z "$${ALPHAVANTAGE_API_KEY:-}" ] && [ -f $(LOCAL)/sandbox.env ]; then . $(LOCAL)/sandbox.env; fi; \
	  ALPHAVANTAGE_ENTITLEMENT="$${ALPHAVANTAGE_ENTITLEMENT:-$(QUOTES_ENTITLEMENT)}"; \
	  set +a; $(PY) scripts/run-step extract_quotes && $(PY) scripts/run-step publish_quotes

# The models that store indicator state, and everything downstream of them (tag set in
# dbt/macros/indicators_model.sql). The int models print this command when the state they find
# was stored by another version of the recursion (docs/transform.md, "Upgrading stored state").
INDICATOR_REFRESH := dbt_build --full-refresh --select tag:indicator_state+

.PHONY: refresh-indicators
refresh-indicators: $(TRANSFORM_VENV) ## Rebuild the indicator models and all downstream of them (dbt --full-refresh): once after their stored state changed
	@if [ -z "$${PGHOST:-}" ]; then $(MAKE) db-up; fi
	@$(PY) scripts/run-step $(INDICATOR_REFRESH)
	@echo "==> indicators rebuilt into audit; the next pipeline run (make pipeline, or the DAG) gates and publishes them"

.PHONY: marts-summary
marts-summary: $(TRANSFORM_VENV) ## Print a short summary of the published marts (row counts, symbols, latest date)
	@set -a; . $(WAREHOUSE_ENV); set +a; $(TRANSFORM_BIN)/quality summary

##@ Test

.PHONY: test-transform
test-transform: $(TRANSFORM_VENV) $(DBT_MANIFEST) $(WAREHOUSE_VENV) $(EXTRACT_VENV) ## Run the transform tests (real dbt, GX, embedded PostgreSQL, sandbox API)
	@$(TRANSFORM_BIN)/python -m pytest tests/transform $(PYTEST_ARGS)

.PHONY: bench-transform
bench-transform: $(TRANSFORM_VENV) $(DBT_MANIFEST) $(WAREHOUSE_VENV) $(EXTRACT_VENV) ## Benchmark: 500 symbols x 20 years full build + gate + publish, then a daily incremental run
	@$(TRANSFORM_BIN)/python bench/transform.py $(BENCH_ARGS)
