# The two commands a newcomer needs (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Node is needed for one test: bpmn-moddle (the library of bpmn-js and Camunda Modeler) loads every model.
NODE_STAMP = node_modules/.installed

.PHONY: run test lint bench bench-link layout clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v node >/dev/null 2>&1 || { echo "node (>= 20.12) is not installed: it is needed to check the models with bpmn-moddle (https://nodejs.org)" >&2; exit 1; }
	@command -v npm >/dev/null 2>&1 || { echo "npm is not installed: it is needed to install bpmn-moddle (package.json)" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

run: $(STAMP)
	$(BIN)/caseflow serve

lint: $(STAMP)
	$(BIN)/ruff check engine adapters tests bench tools
	$(BIN)/ruff format --check engine adapters tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint $(NODE_STAMP)
	$(BIN)/pytest -q

# Regenerate the diagrams of the bundled models (CI checks they are current: tests/definitions/test_bpmn_moddle.py).
layout: $(STAMP)
	$(BIN)/python -m tools.bpmn_layout bpmn/*.bpmn bpmn/*.dmn

BENCH_ARGS ?= --cycles 1000 --clients 4 --workers 2

bench: $(STAMP)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

# Transfers between two engines over RabbitMQ (127.0.0.1:5672) beside raw pika; needs PostgreSQL too.
BENCH_LINK_ARGS ?= --transfers 2000

bench-link: $(STAMP)
	$(BIN)/python -m bench.transfers $(BENCH_LINK_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache node_modules
