# The Kubernetes rehearsal (tests/rehearsal, docs/kubernetes.md "The rehearsal"): one DAG run in the
# kubernetes runtime with every pod the DAG submits run from its exact pod object on the local Docker
# engine, the same run in the local runtime for comparison, the dashboard's pod from the rendered
# Deployment. For tests only: nothing of it is in the chart or the images.
TEST_TARGETS += rehearse

# auto: rehearse when a Docker engine answers or can be started (dockerd-safe), else print NOT RUN,
# which fails the suite when CI=true; no: print NOT RUN without trying (a CI job with no engine, eg.
# the GitHub test job's container), never a failure.
REHEARSE ?= auto
REHEARSE_DEPS = $(AIRFLOW_VENV) $(WAREHOUSE_VENV) $(EXTRACT_VENV) $(TRANSFORM_VENV) $(DBT_MANIFEST) $(HELM)

##@ Test

.PHONY: rehearse
rehearse: $(REHEARSE_DEPS) ## Rehearse the Kubernetes runtime: the DAG's pods from their pod objects on the local Docker engine (REHEARSE=auto|no)
	@mkdir -p $(LOCAL)/pytest
	$(VENVS)/airflow/bin/python -m pytest tests/rehearsal -m "not docker" --basetemp=$(LOCAL)/pytest/rehearsal-static $(PYTEST_ARGS)
	@not_run() { \
	  echo "================================================================================"; \
	  echo "NOT RUN: the Kubernetes rehearsal (make rehearse): $$1"; \
	  if [ -f "$${2:-}" ]; then sed 's/^/  /' "$$2"; fi; \
	  echo "================================================================================"; \
	  if [ "$(REHEARSE)" != no ] && [ "$${CI:-}" = true ]; then echo "FAILED: CI=true requires the rehearsal" >&2; exit 1; fi; \
	}; \
	if [ "$(REHEARSE)" = no ]; then not_run "REHEARSE=no"; exit 0; fi; \
	running=no; if $(DOCKER) info >/dev/null 2>&1 || { [ -n "$(DOCKERD_SAFE)" ] && DOCKER_HOST=$$($(DOCKERD_SAFE) env | sed 's/^export DOCKER_HOST=//') $(DOCKER) info >/dev/null 2>&1; }; then running=yes; fi; \
	if host=$$($(MAKE) -s docker-engine 2>$(LOCAL)/docker-engine.err); then \
	  rc=0; started=$$(date +%s); \
	  DOCKER_HOST="$$host" $(VENVS)/airflow/bin/python -m pytest tests/rehearsal -m docker -s \
	    --basetemp=$(LOCAL)/pytest/rehearsal $(PYTEST_ARGS) || rc=$$?; \
	  echo "==> rehearsal: $$(( $$(date +%s) - started )) s"; \
	  if [ $$running = no ] && [ -n "$(DOCKERD_SAFE)" ]; then echo "==> stopping the Docker engine this test started"; $(DOCKERD_SAFE) stop; fi; \
	  exit $$rc; \
	else \
	  not_run "no Docker engine could be started:" $(LOCAL)/docker-engine.err; \
	fi
