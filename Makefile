# leadflow: every target sets up what it needs; `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= $(shell scripts/find-python.sh)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-cluster lint openapi build bench bench-fanout load dev demo token clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo 'no usable Python 3.11+ found' >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	@scripts/ensure-redis.sh

# The suite includes the scaled-down load run (tests/e2e/test_load_run.py, about a minute); `make load` runs it in full.
test: setup
	$(PY) -m pytest -n 2 --dist loadfile -q
	@$(MAKE) --no-print-directory test-cluster

# The integration tests that use Redis, again on a Redis cluster of their own (3 masters, 3 replicas;
# REDIS_CLUSTER=true), as ElastiCache Serverless runs. The few that stop or proxy a single
# redis-server are skipped there, each saying why.
test-cluster: setup
	LEADFLOW_TEST_CLUSTER=1 $(PY) -m pytest -n 2 --dist loadfile -q tests/integration

# bandit: config in pyproject.toml ([tool.bandit]). The dependency audit (pip-audit, PyPI's data) fails on
# any known vulnerability; when PyPI cannot be reached it prints a loud warning and passes: see scripts/audit_deps.py.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common functions $(wildcard local/*.py bench/*.py scripts/*.py)
	$(VENV)/bin/bandit -c pyproject.toml -q -r layers/common functions local scripts
	$(PY) scripts/audit_deps.py

openapi: setup
	$(PY) scripts/openapi.py > openapi.json

# aws-sam-cli pins many dependencies: it gets a venv of its own (Python 3.12, the functions' runtime) in .venv/sam.
SAM_VENV := $(VENV)/sam
SAM_PYTHON ?= $(firstword $(foreach p,python3.12 $(PY) $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12),$(shell $(p) -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo $(p))))

$(SAM_VENV)/bin/sam:
	@test -n '$(SAM_PYTHON)' || { echo 'make build needs Python 3.12 (the Lambda runtime); set SAM_PYTHON=/path/to/python3.12'; exit 1; }
	$(SAM_PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet aws-sam-cli

build: $(SAM_VENV)/bin/sam
	SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam validate --lint --region us-east-1
	SAM_CLI_TELEMETRY=0 PATH="$(CURDIR)/$(SAM_VENV)/bin:$$PATH" sam build --cached --parallel

bench: setup
	$(PY) bench/scoring.py
	$(PY) bench/intake.py
	$(PY) bench/redis_batch.py
	$(PY) bench/monitor.py
	$(PY) bench/speed_to_lead.py
	$(PY) bench/cold_start.py --as-shipped

# 1,000,000 leads, a fanned-out monitor run and the same run in one invocation: several minutes, so not in `bench`.
bench-fanout: setup
	$(PY) bench/fanout.py

# 50,000 signed webhooks through the local stack, Redis killed once, then an exact reconciliation
# table (exit 1 when a line fails). Options: make load LOAD_ARGS="--webhooks 5000 --outage 20".
load: setup
	$(PY) -m local.load $(LOAD_ARGS)

dev: setup
	$(PY) -m local

demo: setup
	$(PY) -m local.demo

token: setup
	@$(PY) -m local.token

clean:
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
