# keventing — `make up` runs it, `make test` tests it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up demo test e2e test-unit test-integration lint format crds bench bench-quick kafka-start kafka-stop cluster-tools clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

up: install
	$(BIN)/kev up

demo: install
	$(BIN)/kev up --demo

test: install
	$(BIN)/pytest -q -ra --durations=15

# Containers for real (root; not part of `make test`): deploy/e2e/setup.sh installs podman, docker-compose and
# containerd and builds the images locally, then tests/e2e runs docker-compose.yml against podman and installs
# the Helm chart on a one-node cluster (`kev cluster up --node`; its binaries are cluster-tools').
e2e: install
	bash deploy/e2e/setup.sh
	$(BIN)/python -m kev.cluster.toolchain build
	$(BIN)/pytest -q -rA --durations=10 tests/e2e

test-unit: install
	$(BIN)/pytest -q tests/unit

test-integration: install
	$(BIN)/pytest -q tests/integration

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The chart's CRDs are generated from keventing/resources; tests/unit/test_crds.py fails when they are stale.
crds: install
	$(BIN)/python -m keventing.resources.crds --write charts/keventing/crds

# Benchmarks are not tests: they start their own Kafka and stack and write bench/results/<timestamp>.*
bench: install
	bash bench/setup.sh
	$(BIN)/python -m bench.run

bench-quick: install
	bash bench/setup.sh
	$(BIN)/python -m bench.run --quick

kafka-start: install
	$(BIN)/kev kafka start

kafka-stop: install
	$(BIN)/kev kafka stop

# Builds and caches etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl
# and helm (slow the first time).
cluster-tools: install
	$(BIN)/python -m kev.cluster.toolchain build

clean:
	rm -rf $(VENV) .kev .pytest_cache .mypy_cache .ruff_cache *.egg-info
