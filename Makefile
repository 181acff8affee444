# The two commands of the README, plus the checks they are made of.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest clean

# Start the daemon on its built-in defaults: inet:127.0.0.1:10035, the system resolver.
run: $(VENV)/.installed
	$(BIN)/spfpolicy serve

# The whole test suite: lint, types, then every test.
test: lint typecheck pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check spfpolicy tests
	$(BIN)/ruff format --check spfpolicy tests

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed
	$(BIN)/pytest

$(VENV)/.installed: pyproject.toml tests/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c tests/constraints.txt -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
