# The shared package (common/, import datapipe_common): the NYSE calendar, the symbol rule, the
# libpq settings, env parsing (docs/common.md). Every Python component installs it (editable in its
# venv, copied into its image); its tests run in the transform venv (it has dbt's YAML reader too).
TEST_TARGETS += test-common

##@ Test

.PHONY: test-common
test-common: $(VENVS)/transform/.datapipe-synced ## Test the shared package: calendar, parsing, one definition of each shared concept
	@$(VENVS)/transform/bin/python -m pytest tests/common -q $(PYTEST_ARGS)
