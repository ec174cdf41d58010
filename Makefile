# The two commands README.md gives a newcomer: `make course` and `make test`.
# Override the torch wheel for your machine, e.g. make test TORCH_SPEC="torch==2.11.0".
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
LOWER_VENV ?= .venv-lower
LOWER := $(LOWER_VENV)/bin

.PHONY: install course test test-lower lint goldens

# install also registers the venv's Python as the `python3` kernel papermill and nbval start.
install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev,rehearsal]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null

course: install
	$(BIN)/unlearnlib course run --profile tiny --out build/executed

# test: ruff, the unit and hygiene tests, the rehearsal (every notebook on the colab-t4 path,
# on CPU: tests/test_rehearsal.py), then nbval re-executes tests/goldens/ (the whole course,
# once) and compares the cells marked NBVAL_CHECK_OUTPUT with the committed outputs. The
# slowest five tests are listed at the end.
test: install
	$(BIN)/ruff check unlearnlib tests benchmarks
	$(BIN)/pytest -q --nbval-lax --durations=5

# test-lower: the unit tests (not nbval) on the oldest versions pyproject.toml allows, in their
# own venv: every "name>=X" installed as "name==X" (torch is TORCH_SPEC), and the package built
# with the oldest setuptools [build-system] allows.
test-lower:
	test -x $(LOWER)/python || $(PYTHON) -m venv $(LOWER_VENV)
	$(LOWER)/pip install -q --upgrade pip
	$(LOWER)/python -c 'import re, tomllib; t = tomllib.load(open("pyproject.toml", "rb")); \
		p = t["project"]; r = t["build-system"]["requires"] + p["dependencies"] \
		+ sum(p["optional-dependencies"].values(), []); \
		print("\n".join(re.sub(" *>= *", "==", x) for x in r if not x.startswith("torch")))' \
		> $(LOWER_VENV)/lower-bounds.txt
	$(LOWER)/pip install -q "$(TORCH_SPEC)" -c $(LOWER_VENV)/lower-bounds.txt setuptools
	$(LOWER)/pip install -q --no-build-isolation -c $(LOWER_VENV)/lower-bounds.txt \
		-e ".[dev,rehearsal]"
	$(LOWER)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	$(LOWER)/pip list --format=freeze | grep -iE "^(transformers|accelerate|tokenizers|datasets|peft)="
	$(LOWER)/pytest -q

# Refresh the golden notebooks: the course run from scratch (fresh UNLEARNLIB_HOME) on the
# tiny profile, volatile metadata stripped. Run after adding or editing a notebook.
goldens: install
	rm -rf build/goldens
	UNLEARNLIB_HOME=$(CURDIR)/build/goldens/home $(BIN)/unlearnlib course run --profile tiny \
		--out build/goldens --strip
	rm -f tests/goldens/[0-9][0-9]_*.ipynb
	cp build/goldens/[0-9][0-9]_*.ipynb tests/goldens/
