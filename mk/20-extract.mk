# The extractor and the sandbox Alpha Vantage API (extract/, docs/extract.md).
EXTRACT_VENV   := $(VENVS)/extract/.datapipe-synced
VENV_TARGETS   += $(EXTRACT_VENV)
TEST_TARGETS   += test-extract
LOCK_TARGETS   += lock-extract

SANDBOX_PORT   ?= 8765
SANDBOX_HOST   ?= 127.0.0.1
# Extra `extract sandbox` flags for sandbox-up/sandbox, e.g. SANDBOX_ARGS='--fault "throttle?every=3"'
SANDBOX_ARGS   ?=
SANDBOX_PID    := $(LOCAL)/sandbox.pid
SANDBOX_LOG    := $(LOCAL)/sandbox.log
SANDBOX_ENV    := $(LOCAL)/sandbox.env
# Requests/minute the extractor uses against the local sandbox (the real API default is in docs/extract.md).
SANDBOX_RPM    ?= 600

$(EXTRACT_VENV): extract/requirements.lock extract/requirements-test.lock extract/pyproject.toml $(COMMON_DEPS) scripts/sync-venv | $(UV)
	@scripts/sync-venv $(VENVS)/extract extract/requirements.lock extract/requirements-test.lock -- $(COMMON) extract

.PHONY: lock-extract
lock-extract: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) extract/pyproject.toml -o extract/requirements.lock
	$(UV) pip compile $(LOCK_FLAGS) extract/requirements-test.in -c extract/requirements.lock -o extract/requirements-test.lock

##@ Local

.PHONY: sandbox
sandbox: $(EXTRACT_VENV) ## Run the sandbox Alpha Vantage API in the foreground (SANDBOX_PORT, SANDBOX_ARGS)
	$(VENVS)/extract/bin/extract sandbox --host $(SANDBOX_HOST) --port $(SANDBOX_PORT) $(SANDBOX_ARGS)

.PHONY: sandbox-up
sandbox-up: $(EXTRACT_VENV) ## Start the sandbox API in the background; writes .local/sandbox.env (idempotent)
	@mkdir -p $(LOCAL)
	@if [ -f $(SANDBOX_PID) ] && kill -0 "$$(cat $(SANDBOX_PID))" 2>/dev/null; then \
	  echo "sandbox already running (pid $$(cat $(SANDBOX_PID)))"; \
	else \
	  nohup $(VENVS)/extract/bin/extract sandbox --host $(SANDBOX_HOST) --port $(SANDBOX_PORT) $(SANDBOX_ARGS) \
	    >$(SANDBOX_LOG) 2>&1 </dev/null & echo $$! >$(SANDBOX_PID); \
	  for i in $$(seq 1 100); do \
	    if curl -fsS http://$(SANDBOX_HOST):$(SANDBOX_PORT)/healthz >/dev/null 2>&1 || \
	       $(PY) -c "import urllib.request,sys; urllib.request.urlopen('http://$(SANDBOX_HOST):$(SANDBOX_PORT)/healthz', timeout=1)" 2>/dev/null; then break; fi; \
	    if ! kill -0 "$$(cat $(SANDBOX_PID))" 2>/dev/null; then echo "sandbox failed to start; see $(SANDBOX_LOG)"; tail -20 $(SANDBOX_LOG); rm -f $(SANDBOX_PID); exit 1; fi; \
	    sleep 0.1; \
	  done; \
	  echo "sandbox API on http://$(SANDBOX_HOST):$(SANDBOX_PORT)/query (pid $$(cat $(SANDBOX_PID)), log $(SANDBOX_LOG))"; \
	fi
	@printf 'export ALPHAVANTAGE_BASE_URL=http://%s:%s/query\nexport ALPHAVANTAGE_API_KEY=sandbox\nexport ALPHAVANTAGE_REQUESTS_PER_MINUTE=%s\n' \
	  $(SANDBOX_HOST) $(SANDBOX_PORT) $(SANDBOX_RPM) >$(SANDBOX_ENV)

# `make clean` also stops the background sandbox (its pid file lives in .local).
clean: sandbox-down

.PHONY: sandbox-down
sandbox-down: ## Stop the background sandbox API
	@if [ -f $(SANDBOX_PID) ]; then \
	  pid=$$(cat $(SANDBOX_PID)); \
	  if kill -0 $$pid 2>/dev/null; then kill $$pid; for i in $$(seq 1 50); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; echo "sandbox stopped (pid $$pid)"; fi; \
	  rm -f $(SANDBOX_PID); \
	fi
	@rm -f $(SANDBOX_ENV)

# The API settings for a local run: the user's own when ALPHAVANTAGE_BASE_URL or ALPHAVANTAGE_API_KEY is
# set, else the sandbox (started on demand).
define extract_step
	@if [ -n "$${ALPHAVANTAGE_BASE_URL:-}" ] || [ -n "$${ALPHAVANTAGE_API_KEY:-}" ]; then \
	  echo "==> using the Alpha Vantage API from the environment ($${ALPHAVANTAGE_BASE_URL:-https://www.alphavantage.co/query})"; \
	  scripts/run-step $(1) $(EXTRACT_ARGS); \
	else \
	  $(MAKE) sandbox-up; \
	  source $(SANDBOX_ENV) && source $(WAREHOUSE_ENV) && scripts/run-step $(1) $(EXTRACT_ARGS); \
	fi
endef

# Extra `extract prices|companies` arguments, e.g. EXTRACT_ARGS='--symbols IBM,AAPL --full'
EXTRACT_ARGS ?=

.PHONY: extract
extract: db-up $(EXTRACT_VENV) ## Load daily prices into raw (sandbox API unless ALPHAVANTAGE_* are set; EXTRACT_ARGS)
	$(call extract_step,extract_prices)

.PHONY: extract-companies
extract-companies: db-up $(EXTRACT_VENV) ## Load company overviews into raw (same API choice as `extract`)
	$(call extract_step,extract_companies)

.PHONY: extract-migrate
extract-migrate: db-up $(EXTRACT_VENV) ## Create the raw and ops extraction tables (idempotent; extract does it too)
	@source $(WAREHOUSE_ENV) && $(VENVS)/extract/bin/extract migrate

##@ Test

.PHONY: test-extract
test-extract: $(EXTRACT_VENV) $(WAREHOUSE_VENV) ## Run the extractor + sandbox tests (real PostgreSQL, real HTTP)
	@cd $(ROOT) && $(VENVS)/extract/bin/python -m pytest tests/extract -q

.PHONY: bench-extract
bench-extract: $(EXTRACT_VENV) $(WAREHOUSE_VENV) ## Benchmark the extractor: 500 symbols full history from the sandbox
	@$(VENVS)/extract/bin/python bench/extract.py
