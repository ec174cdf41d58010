# The two commands README.md gives a newcomer: `make course` and `make test`.
# Override the torch wheel for your machine, e.g. make test TORCH_SPEC="torch==2.11.0".
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install course test lint goldens

# install also registers the venv's Python as the `python3` kernel papermill and nbval start.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null

course: install
	$(BIN)/unlearnlib course run --profile tiny --out build/executed

# test: ruff, the unit and hygiene tests, then nbval re-executes tests/goldens/ (the whole
# course, once) and compares the cells marked NBVAL_CHECK_OUTPUT with the committed outputs.
test: install
	$(BIN)/ruff check unlearnlib tests benchmarks
	$(BIN)/pytest -q --nbval-lax

# Refresh the golden notebooks: the course run from scratch (fresh UNLEARNLIB_HOME) on the
# tiny profile, volatile metadata stripped. Run after adding or editing a notebook.
goldens: install
	rm -rf build/goldens
	UNLEARNLIB_HOME=$(CURDIR)/build/goldens/home $(BIN)/unlearnlib course run --profile tiny \
		--out build/goldens --strip
	rm -f tests/goldens/[0-9][0-9]_*.ipynb
	cp build/goldens/[0-9][0-9]_*.ipynb tests/goldens/
