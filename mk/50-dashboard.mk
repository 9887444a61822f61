# The Streamlit dashboard (dashboard/): venv, lock, local server, tests.
DASHBOARD_VENV := $(VENVS)/dashboard/.datapipe-synced
DASHBOARD_ENV  := $(LOCAL)/dashboard.env
DASHBOARD_PORT    ?= 8501
DASHBOARD_ADDRESS ?= 127.0.0.1
CHROMIUM       ?= /usr/bin/chromium
VENV_TARGETS += $(DASHBOARD_VENV)
TEST_TARGETS += test-dashboard
LOCK_TARGETS += lock-dashboard

# (scripts/sync-venv compiles bytecode at install: a server that cannot write __pycache__ would
# recompile streamlit and pandas on every start and first page view, seconds of CPU)
$(DASHBOARD_VENV): dashboard/requirements.lock dashboard/requirements-test.lock dashboard/pyproject.toml $(COMMON_DEPS) scripts/sync-venv | $(UV)
	@scripts/sync-venv $(VENVS)/dashboard dashboard/requirements.lock dashboard/requirements-test.lock -- $(COMMON) dashboard

.PHONY: lock-dashboard
lock-dashboard: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) dashboard/pyproject.toml -o dashboard/requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) -c dashboard/requirements.lock dashboard/requirements-test.in -o dashboard/requirements-test.lock

# The browser tests drive the system Chromium through Playwright (no `playwright install`).
.PHONY: chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "==> installing chromium (apt) for the dashboard browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
	@test -x $(CHROMIUM) || { echo "error: $(CHROMIUM) missing; install it with 'apt-get install -y chromium'" >&2; exit 1; }

##@ Local

.PHONY: dashboard
dashboard: $(DASHBOARD_VENV) db-up ## Serve the dashboard on http://localhost:8501 against the local warehouse (reader role)
	@set -a; source $(DASHBOARD_ENV); set +a; \
	  echo "==> dashboard on http://localhost:$(DASHBOARD_PORT) (Ctrl-C to stop)"; \
	  exec $(VENVS)/dashboard/bin/datapipe-dashboard --port $(DASHBOARD_PORT) --address $(DASHBOARD_ADDRESS)

##@ Test

.PHONY: test-dashboard
test-dashboard: $(DASHBOARD_VENV) $(WAREHOUSE_VENV) $(EXTRACT_VENV) $(TRANSFORM_VENV) chromium ## Dashboard tests: the real pipeline on sandbox data, AppTest per page, headless Chromium, read-only role, outage and publish states, input safety
	@mkdir -p $(LOCAL)/pytest
	$(VENVS)/dashboard/bin/python -m pytest tests/dashboard --basetemp=$(LOCAL)/pytest/dashboard $(PYTEST_ARGS)

.PHONY: bench-quotes
bench-quotes: $(DASHBOARD_VENV) $(WAREHOUSE_VENV) $(EXTRACT_VENV) $(TRANSFORM_VENV) chromium ## Benchmark the live quotes: a 500-symbol bulk poll; a bar at the sandbox to its price in Chromium (BENCH_ARGS)
	@$(VENVS)/dashboard/bin/python bench/quotes.py $(BENCH_ARGS)

.PHONY: bench-dashboard
bench-dashboard: $(DASHBOARD_VENV) $(WAREHOUSE_VENV) chromium ## Benchmark: 500 symbols x 20 years, query p95 and first browser render per page
	$(VENVS)/dashboard/bin/python bench/dashboard.py
