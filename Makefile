# The two commands of the README: `make run` and `make test`. Each creates .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

run: $(STAMP)
	$(BIN)/newsletter up

test: $(STAMP)
	$(BIN)/ruff check newsletter tests bench worker.py
	$(BIN)/mypy newsletter
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests bench worker.py
	$(BIN)/ruff format --check newsletter tests bench worker.py
	$(BIN)/mypy newsletter

# make bench BENCH="import --rows 200000"; with no BENCH, the list of benchmarks.
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) var build .pytest_cache .mypy_cache .ruff_cache
