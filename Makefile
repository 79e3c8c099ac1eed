# The two commands of the README: `make run` and `make test`. Each creates .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-unit test-integration test-system lint bench clean messages

run: $(STAMP)
	$(BIN)/newsletter up

# Lint, then the tiers from the fastest: a broken unit test stops the run in seconds.
test: lint test-unit test-integration test-system

# No database server, broker, SMTP server or worker; under a minute.
test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

# SQLite and PostgreSQL, Redis, a real Celery worker, SMTP on loopback. The tests mostly
# wait (for a worker, a relay, a retry), so they run in TEST_PROCESSES processes (xdist),
# each with its own databases, Redis keys, SMTP port, workers and var/.
TEST_PROCESSES ?= 3
test-integration: $(STAMP)
	$(BIN)/pytest -n $(TEST_PROCESSES) tests/integration

# `newsletter up`, browsers, Dovecot and Postfix, drills, fuzzing, SpamAssassin, the wheel.
test-system: $(STAMP)
	$(BIN)/pytest tests/system

lint: $(STAMP)
	$(BIN)/ruff check newsletter tests bench drills worker.py
	$(BIN)/ruff format --check newsletter tests bench drills worker.py
	$(BIN)/mypy newsletter
	$(BIN)/lint-imports

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
	rm -rf $(VENV) var build .pytest_cache .mypy_cache .ruff_cache .grimp_cache .import_linter_cache

# After adding or changing a translatable string: re-extract newsletter/locales/messages.pot,
# merge it into the pt and zh catalogs, then translate their new (empty or fuzzy) entries.
# `_base` template folders are read too: hence --ignore-dirs, whose default skips `_*`.
messages: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k gettext -k ngettext:1,2 -k translatable \
		--ignore-dirs='.* __pycache__ var build' --add-comments=Translators: \
		--project=newsletter --sort-by-file -o newsletter/locales/messages.pot .
	$(BIN)/pybabel update -i newsletter/locales/messages.pot -d newsletter/locales -l pt --ignore-obsolete
	$(BIN)/pybabel update -i newsletter/locales/messages.pot -d newsletter/locales -l zh --ignore-obsolete
