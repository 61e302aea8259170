# rentgate: make venv | demo | test | bench | typecheck | clean
# Everything runs from the project's own virtualenv in .venv (override with VENV=...).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pip install runs again only when pyproject.toml is newer than this stamp.
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo test bench typecheck lint check clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "rentgate needs Python >= 3.11, but '$(PYTHON)' is: $$($(PYTHON) --version 2>&1)." >&2; \
	  echo "Install python3.11 (or newer) and run: make PYTHON=python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { \
	  echo "cannot create $(VENV); on Debian install python3-venv" >&2; exit 1; }
	@$(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "$(VENV) was made with an older Python; run 'rm -rf $(VENV)' and try again" >&2; exit 1; }
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: venv
	$(BIN)/rentgate demo

# Two pytest-xdist workers, one per core of the 2-core machines: much of the
# suite waits on PostgreSQL, Mosquitto, Chromium and the processes it starts,
# and the other worker runs meanwhile. Each worker starts its own PostgreSQL
# cluster and has its own temp folders and free ports; --dist loadfile keeps
# a file's tests (and its module fixtures: the demo run, the fuzzed live
# server) on one worker. PYTEST_WORKERS=0 runs everything in one process.
PYTEST_WORKERS ?= 2

test: venv
	$(BIN)/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: venv
	$(BIN)/python bench/ingest.py --json

typecheck: venv
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/services.py tests/conftest.py tests/fontless.py tools/make_plate_font.py

lint: venv
	$(BIN)/ruff check rentgate gateway devices server firmware_sim tests bench tools

# What CI runs before the tests: types and lint.
check: typecheck lint

clean:
	rm -rf build .pytest_cache .mypy_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +
