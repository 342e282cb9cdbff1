# Parley — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.lock pyproject.toml | cksum | cut -d' ' -f1)
JS_STAMP := tests/js/node_modules/.installed-$(shell cat tests/js/package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
WEB_STAMP := web/node_modules/.installed-$(shell cat web/package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
WEB_TEST_STAMP := tests/web/node_modules/.installed-$(shell cat tests/web/package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json

.PHONY: run test install lint format lock clean test-unit test-integration test-e2e balancers cluster web chromium dev-cert

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

$(WEB_STAMP): web/package-lock.json
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web/dist/index.html: $(WEB_STAMP) $(WEB_SOURCES)
	npm --prefix web run build --silent

## The browser client (TypeScript, Vite) built into web/dist, which Parley serves at /
web: web/dist/index.html

$(WEB_TEST_STAMP): tests/web/package-lock.json
	npm ci --prefix tests/web --no-audit --no-fund --loglevel=error
	touch $(WEB_TEST_STAMP)

## Debian's Chromium for the browser tests (installed when missing and run as root)
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }; \
	else echo "chromium is missing, browser tests will not run; as root: apt-get install -y chromium" >&2; fi

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

TLS_DIR := config/deploy/tls

## A self-signed certificate for localhost in config/deploy/tls/ (git-ignored), for the compose stack's https
dev-cert:
	@if [ -e $(TLS_DIR)/fullchain.pem ]; then \
	  echo "$(TLS_DIR)/fullchain.pem exists (a real certificate?); remove it first" >&2; exit 1; fi
	mkdir -p $(TLS_DIR)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 90 \
	  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	  -keyout $(TLS_DIR)/privkey.pem -out $(TLS_DIR)/fullchain.pem 2>/dev/null
	@# HAProxy takes the chain and the key in one file.
	umask 077 && cat $(TLS_DIR)/fullchain.pem $(TLS_DIR)/privkey.pem > $(TLS_DIR)/haproxy.pem

## Start Parley on the embedded defaults (SQLite, in-memory fan-out) at http://127.0.0.1:8000
run: install
	@if command -v npm >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory web || echo "the web client did not build: serving the API only"; \
	else echo "npm not found: the web client is not built, Parley serves the API only"; fi
	$(BIN)/parley serve

## The whole suite: unit, integration (PostgreSQL + Redis) and end-to-end (real nodes)
test: install $(JS_STAMP) balancers web $(WEB_TEST_STAMP) chromium
	$(BIN)/python -m pytest

test-unit: install
	$(BIN)/python -m pytest tests/unit

test-integration: install $(JS_STAMP)
	$(BIN)/python -m pytest tests/integration

test-e2e: install $(JS_STAMP) balancers web $(WEB_TEST_STAMP) chromium
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
	rm -rf $(VENV) tests/js/node_modules web/node_modules web/dist tests/web/node_modules .pytest_cache .mypy_cache .ruff_cache
