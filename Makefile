# The two commands of the README: `make run` and `make test`. Both set everything up on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_VERSION := 1.170.0
LOGHUB ?= ../shared/data/loghub
export SAM_CLI_TELEMETRY := 0

.PHONY: install runtime run test lint cfn-lint build unit integration e2e openapi bench-grouping bench-backfill lock clean

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# aws-sam-cli lives in its own virtualenv: its pins must not decide ours.
$(SAM_VENV)/.installed:
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/pip install --quiet aws-sam-cli==$(SAM_CLI_VERSION)
	touch $@

# The boto3 the python3.11 Lambda runtime ships: what the built functions run beside (never the dev venv's).
RUNTIME_SITE := .aws-runtime/python3.11
$(RUNTIME_SITE)/.installed: runtime/python3.11.txt
	rm -rf $(RUNTIME_SITE)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --target $(RUNTIME_SITE) -r runtime/python3.11.txt
	touch $@

install: $(VENV)/.installed

runtime: $(RUNTIME_SITE)/.installed

run: install
	$(BIN)/incident-loop run

lint: install
	$(BIN)/ruff check layers functions tests dev

cfn-lint: install
	$(BIN)/cfn-lint template.yaml

build: $(SAM_VENV)/.installed
	$(SAM) build

# Two workers (pytest-xdist), each module whole on one (its module fixtures: a moto server, a database, the
# functions' hosts); each worker has its own databases, servers and Alertmanager, installed here once first.
test: install runtime $(SAM_VENV)/.installed
	./scripts/check-postgres
	./scripts/alertmanager install
	$(MAKE) lint cfn-lint build
	$(BIN)/pytest -q -n 2 --dist loadscope

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

e2e: install
	$(BIN)/pytest -q tests/e2e

openapi: install
	$(BIN)/python -m incident_loop_dev.openapi > docs/openapi.json

bench-backfill: install
	$(BIN)/incident-loop bench backfill --rows 200000 --runs 4 --write-docs

bench-grouping: install
	$(BIN)/incident-loop bench grouping --db --latency --write-docs $(LOGHUB)/*.csv

# Regenerate the lock from a fresh resolution of pyproject.toml's pins.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet ".[dev]"
	.venv-lock/bin/pip freeze --exclude incident-loop > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .aws-runtime .pytest_cache .ruff_cache
