# The two commands README.md gives a newcomer: `make course` and `make test`.
# Override the torch wheel for your machine, e.g. make test TORCH_SPEC="torch==2.11.0".
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install course test lint goldens

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"

course: install
	$(BIN)/unlearnlib smoke --profile tiny

test: install
	$(BIN)/ruff check unlearnlib tests benchmarks
	$(BIN)/pytest -q
