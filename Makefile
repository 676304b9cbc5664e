# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean-db

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e .
	touch $@

$(BIN)/.dev-installed: $(BIN)/.installed
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

## Start the embedded PostgreSQL, the API and portal on http://127.0.0.1:8000 and the simulator.
run: $(BIN)/.installed
	BILLING_COOKIE_SECURE=$${BILLING_COOKIE_SECURE:-false} $(BIN)/billing run

## Install the development tools and run the whole test suite.
test: $(BIN)/.dev-installed
	bash scripts/test.sh

lint: $(BIN)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/mypy app schemas ingest stream rating billing api

bench: $(BIN)/.dev-installed
	$(BIN)/python -m bench.pipeline_throughput

## Throw away the embedded database (demo data is loaded again on the next `make run`).
clean-db:
	rm -rf var/postgres
