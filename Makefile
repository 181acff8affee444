# The README's two commands (run, test) and what they are made of; deb, rpm and bench too.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest clean

# Start the daemon on its built-in defaults: inet:127.0.0.1:10035, the system resolver.
run: $(VENV)/.installed
	$(BIN)/spfpolicy serve

# The whole test suite: lint, types, then every test.
test: lint typecheck pytest

# The package smoke test is Python too; its main file, an autopkgtest, has no .py suffix.
LINTED := spfpolicy tests packaging/debian/tests packaging/debian/tests/smoke

lint: $(VENV)/.installed
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed
	$(BIN)/pytest

# The suite against the newest releases on PyPI instead of tests/constraints.txt's pins, in a
# venv of its own (CI runs it beside `make test`): what `pip install .` gives a user today.
NEWEST_VENV ?= .venv-newest
.PHONY: test-newest
test-newest:
	rm -rf $(NEWEST_VENV)
	$(PYTHON) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/pip install --quiet --upgrade pip
	$(NEWEST_VENV)/bin/pip install --quiet -e '.[test]'
	$(NEWEST_VENV)/bin/pip list --format=freeze | grep -iE '^(pyspf|dnspython|cachetools|prometheus.client|pytest|hypothesis)=='
	$(NEWEST_VENV)/bin/pytest

# Packages built from the working tree into $(DIST): the .deb needs packaging/debian/control's
# Build-Depends, the RPM Debian's rpm package (see packaging/build-*.sh). CI also installs,
# smoke-tests and lints them: packaging/ci-packages.sh (root).
DIST ?= dist
.PHONY: deb rpm
deb:
	packaging/build-deb.sh $(DIST)

rpm:
	packaging/build-rpm.sh $(DIST)

# Issue 4's benchmark: spfpolicy against a DUNNO floor and Debian's policyd-spf (apt-get install
# postfix-policyd-spf-python), a few minutes; see tests/bench/README.md. Never part of `test`.
# Options go in BENCH_ARGS, e.g. `make bench BENCH_ARGS=--quick` (under a minute).
.PHONY: bench
bench: $(VENV)/.installed
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

$(VENV)/.installed: pyproject.toml tests/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c tests/constraints.txt -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) $(NEWEST_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
