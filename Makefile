# datapipe-analytics — every developer and user entry point. `make help` lists them.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

ROOT        := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
LOCAL       := $(ROOT)/.local
VENVS       := $(LOCAL)/venvs
UV_VERSION  ?= 0.13.9
UV          := $(VENVS)/uv/bin/uv
PYTHON      ?= python3
export UV_CACHE_DIR ?= $(LOCAL)/cache/uv
WAREHOUSE_ENV := $(LOCAL)/warehouse.env
# Python interpreter used for the stdlib-only helper scripts.
PY          := $(PYTHON)
LOCK_PY     ?= 3.11
# The shared package (common/) is installed from its folder, never from an index: locks pin its
# dependencies, not the package itself.
LOCK_FLAGS  := --universal --python-version $(LOCK_PY) --generate-hashes -q --no-header --no-emit-package datapipe-common
# The shared package every Python component installs (editable in the venvs, copied into the images).
COMMON      := common
COMMON_DEPS := common/pyproject.toml

# Component makefiles add their targets, venvs, test suites (TEST_TARGETS) and locks (LOCK_TARGETS).
TEST_TARGETS :=
LOCK_TARGETS :=
VENV_TARGETS :=

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN { FS = ":.*##"; n = split("General Local Cluster Test", order, " "); \
	              for (i = 1; i <= n; i++) seen[order[i]] = 1 } \
	  /^##@/ { sec = substr($$0, 5); if (!(sec in seen)) { seen[sec] = 1; order[++n] = sec } } \
	  /^[a-zA-Z0-9_.-]+:.*?##/ { body[sec] = body[sec] sprintf("  \033[36m%-18s\033[0m %s\n", $$1, $$2) } \
	  END { printf "\nUsage:\n  make \033[36m<target>\033[0m\n"; \
	        for (i = 1; i <= n; i++) if (body[order[i]] != "") printf "\n\033[1m%s\033[0m\n%s", order[i], body[order[i]] }' $(MAKEFILE_LIST)

include $(sort $(wildcard $(ROOT)/mk/*.mk))
