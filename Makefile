# The two commands a newcomer needs (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/caseflow serve

lint: $(STAMP)
	$(BIN)/ruff check engine adapters tests bench
	$(BIN)/ruff format --check engine adapters tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

BENCH_ARGS ?= --cycles 1000 --clients 4 --workers 2

bench: $(STAMP)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .pytest_cache
