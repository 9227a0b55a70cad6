# `make demo` and `make test` are all a new machine needs (Python 3.11+; PostgreSQL optional).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PG_URL  ?= postgresql+psycopg://postgres@127.0.0.1:5432/

.PHONY: install demo test lint pytest pytest-pg bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/ledger demo

lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

pytest: install
	$(PY) -m pytest

# Runs the database tests again on a throw-away PostgreSQL database when a server answers;
# set LEDGER_REQUIRE_POSTGRES=1 (as CI does) to fail instead of skipping.
pytest-pg: install
	@if $(PY) -m tests.pg_reachable "$(PG_URL)"; then \
		echo "== pytest on PostgreSQL ($(PG_URL))"; \
		LEDGER_TEST_DATABASE_URL="$(PG_URL)" $(PY) -m pytest; \
	elif [ -n "$$LEDGER_REQUIRE_POSTGRES" ]; then \
		echo "PostgreSQL is not reachable at $(PG_URL)" >&2; exit 1; \
	else \
		echo "PostgreSQL is not reachable at $(PG_URL): PostgreSQL run skipped"; \
	fi

test: lint pytest pytest-pg

bench: install
	$(PY) bench/log.py
	$(PY) bench/consent_import.py
	$(PY) bench/deid.py
	$(PY) bench/manifest.py
	$(PY) bench/grants.py
	$(PY) bench/access_request.py
	$(PY) bench/authorize.py
	$(PY) bench/console.py
	$(PY) bench/dicomweb.py
	$(PY) bench/release_render.py
	$(PY) bench/startup.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
