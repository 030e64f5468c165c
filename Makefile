# leadflow: every target sets up what it needs; `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= $(shell command -v python3.12 || command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint openapi build bench dev demo token clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@scripts/ensure-redis.sh

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common functions $(wildcard local/*.py bench/*.py scripts/*.py)

openapi: setup
	$(PY) -m leadflow.openapi > openapi.json

build: setup
	$(VENV)/bin/sam build --cached --parallel

bench: setup
	$(PY) bench/scoring.py
	$(PY) bench/redis_batch.py

dev: setup
	$(PY) -m local

demo: setup
	$(PY) -m local.demo

token: setup
	@$(PY) -m local.token

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
