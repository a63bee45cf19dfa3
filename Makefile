# Retrainer: the single entry point. `make help` lists the targets.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_STAMP := .venv/.stamp
export RETRAINER_STATE ?= $(HOME)/.cache/retrainer/world

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(VENV_STAMP): requirements/dev.lock operator/pyproject.toml trainer/pyproject.toml tools/pyproject.toml cli/pyproject.toml contract/pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install -q uv
	uv venv -q --allow-existing --python 3.11 .venv
	uv pip sync -q --python $(PY) requirements/dev.lock
	uv pip install -q --python $(PY) --no-deps -e operator -e trainer -e tools -e contract -e cli
	@touch $@

venv: $(VENV_STAMP) ## Create .venv from the pinned lock files

lock: ## Re-pin requirements/*.lock from requirements/*.in
	uv pip compile -q --python-version 3.11 --override requirements/overrides.txt requirements/dev.in -o requirements/dev.lock
	uv pip compile -q --python-version 3.11 --override requirements/overrides.txt requirements/operator.in -o requirements/operator.lock
	uv pip compile -q --python-version 3.11 --override requirements/overrides.txt requirements/trainer.in -o requirements/trainer.lock
	uv pip compile -q --python-version 3.11 --override requirements/overrides.txt requirements/mlflow.in -o requirements/mlflow.lock

tools: ## Build (or reuse) etcd, kube-*, kubectl, helm, minio under ~/.cache/retrainer/bin
	@tools/build-tools.sh >/dev/null

kueue: ## Build (or reuse) Kueue for the tests (the demo does not need it)
	@tools/build-kueue.sh >/dev/null

world-up: venv tools ## Start the local world (apiserver, controllers, pod runner, MinIO, MLflow)
	$(PY) -m retrainer_world up

world-down: ## Stop the local world; leaves no process behind
	@if [ -x $(PY) ]; then $(PY) -m retrainer_world down; fi

crds-sync: ## Fill the ModelLine CRD's generated parts, copy crds/ into the chart, regenerate docs/api*.md
	$(PY) -m retrainer_docgen.crdgen
	cp crds/retrainer.dev_retrainjobs.yaml crds/retrainer.dev_modellines.yaml charts/retrainer/crds/
	$(PY) -m retrainer_docgen.apidocs crds/retrainer.dev_retrainjobs.yaml > docs/api.md
	$(PY) -m retrainer_docgen.apidocs crds/retrainer.dev_modellines.yaml > docs/api-modelline.md

lint: venv ## ruff check + format check, mypy on operator/, trainer/ and tools/
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy operator/retrainer_operator trainer/retrainer_trainer tools/retrainer_world tools/retrainer_demo tools/retrainer_docgen cli/retrainer_cli contract/retrainer_contract

test-unit: venv ## Fast tests: no network, no world
	$(PY) -m pytest -q tests/unit

test-integration: venv tools kueue engine images browser ## Tests against the real local world
	$(PY) -m pytest -q -m integration tests/integration

test: venv tools kueue lint engine images browser ## Everything CI runs: lint, unit and integration tiers
	$(PY) -m pytest -q -p no:cacheprovider --ignore=tests/bench tests

bench: venv tools ## Benchmarks, reported as ratios against a baseline in the same run
	$(PY) -m pytest -q -s tests/bench

bench-scale: venv tools ## The operator at 1,000 ModelLines and 10,000 RetrainJobs (RETRAINER_SCALE=1; 0.1 = a tenth)
	RETRAINER_SCALE=$${RETRAINER_SCALE:-1} $(PY) -m pytest -q -s tests/bench/test_scale_bench.py

VERSION ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/retrainer/Chart.yaml)
# Where `make images` tags (and with PUSH=1 pushes) the images: <REGISTRY>/operator:<TAG>,
# <REGISTRY>/trainer:<TAG> and <REGISTRY>/mlflow:<TAG> (the chart's bundled MLflow). The
# chart's defaults name ghcr.io/retrainer, which is not published:
# build and push to your own registry, then install with --set image.repository=... .
REGISTRY ?= ghcr.io/retrainer
TAG ?= $(VERSION)
PUSH ?=
# The integration tier runs pods from these images (tests/integration/container_support.py).
export RETRAINER_IMAGE_REGISTRY := $(REGISTRY)
export RETRAINER_IMAGE_TAG := $(TAG)
engine: ## Install podman, buildah, runc, mmdebstrap (Debian packages) when missing
	@tools/images/install-engine.sh

browser: ## Install Debian's chromium for the browser tests
	@tools/install-browser.sh

images: ## Build the operator, trainer and mlflow images (docker, else buildah); REGISTRY= TAG= PUSH=1
	@REGISTRY=$(REGISTRY) TAG=$(TAG) PUSH=$(PUSH) tools/images/build.sh

demo: venv tools ## Start the world, install the chart, train v1 and v2, show them
	$(PY) -m retrainer_demo

.PHONY: engine images browser help venv lock tools kueue world-up world-down crds-sync lint test-unit test-integration test bench bench-scale demo
