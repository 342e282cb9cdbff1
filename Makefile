# Parley — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.lock pyproject.toml | cksum | cut -d' ' -f1)
JS_STAMP := tests/js/node_modules/.installed-$(shell cat tests/js/package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: run test install lint format lock clean test-unit test-integration test-e2e balancers cluster

$(STAMP): requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

$(JS_STAMP): tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
	touch $(JS_STAMP)

install: $(STAMP)

## nginx and HAProxy (Debian packages) for the load-balancer tests and `make cluster`
balancers:
	@if command -v nginx >/dev/null 2>&1 && command -v haproxy >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing nginx-light and haproxy"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light haproxy >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light haproxy >/dev/null; }; \
	else echo "nginx or haproxy is missing; as root: apt-get install -y nginx-light haproxy" >&2; fi

## 2 nodes + nginx on 127.0.0.1:8080 (PostgreSQL + Redis); options: CLUSTER_ARGS="--nodes 3 --balancer haproxy"
cluster: install balancers
	$(BIN)/python -m scripts.cluster $(CLUSTER_ARGS)

## Start Parley on the embedded defaults (SQLite, in-memory fan-out) at http://127.0.0.1:8000
run: install
	$(BIN)/parley serve

## The whole suite: unit, integration (PostgreSQL + Redis) and end-to-end (real nodes)
test: install $(JS_STAMP) balancers
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install
	$(BIN)/python -m pytest tests/integration

test-e2e: install $(JS_STAMP) balancers
	$(BIN)/python -m pytest tests/e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Re-pin dependencies after editing pyproject.toml
lock: install
	$(BIN)/uv pip compile pyproject.toml --python-version 3.11 -o requirements.lock --quiet
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements-dev.lock --quiet

clean:
	rm -rf $(VENV) tests/js/node_modules .pytest_cache .mypy_cache .ruff_cache
