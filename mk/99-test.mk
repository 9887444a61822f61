# Aggregates over every component: venvs, the test suites, locks, clean.
##@ Test

.PHONY: venvs
venvs: $(VENV_TARGETS) ## Create/update every virtualenv from the pinned locks

.PHONY: test
test: venvs ## Run every test suite (installs what it needs; starts and stops its own servers)
	@for t in $(TEST_TARGETS); do echo "==> $$t"; $(MAKE) $$t || { echo "FAILED: $$t"; exit 1; }; done
	@echo "==> all test suites passed: $(TEST_TARGETS)"

.PHONY: lock
lock: $(UV) ## Re-resolve every pinned lock file (needs PyPI)
	@for t in $(LOCK_TARGETS); do $(MAKE) $$t; done

.PHONY: clean
clean: db-down ## Stop local servers and remove .local (venvs, warehouse, caches)
	rm -rf $(LOCAL)

$(UV):
	@echo "==> bootstrapping uv $(UV_VERSION)"
	@$(PYTHON) -m venv $(VENVS)/uv
	@$(VENVS)/uv/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
