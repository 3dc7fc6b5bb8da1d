PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install run test lint format sql clean

install: ## create .venv and install the project with its dev extras, and tests/oauth4webapi's npm packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# oauth4webapi for tests/e2e/test_oauth4webapi.py (skipped without node, except in CI)
	@if command -v npm >/dev/null; then npm ci --prefix tests/oauth4webapi --no-audit --no-fund --loglevel=error; \
	else echo "npm not found: tests/e2e/test_oauth4webapi.py will be skipped (Node 20 needed)"; fi

run: ## both services on the embedded default (SQLite under var/)
	$(BIN)/python manage.py

# pytest-xdist workers for `make test` (TEST_WORKERS=0: one process; groups: tests/conftest.py).
# 3, not one per core: a third of the suite waits on subprocesses, browsers and sleeps
# (measured on 2 cores: 4:05 with 3 workers, 4:41 with 2).
TEST_WORKERS ?= 3

test: ## the whole suite on TEST_WORKERS xdist workers: PostgreSQL when reachable (mandatory with CI=true) and SQLite
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: ## ruff, ruff format, mypy, import-linter contracts
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

sql: ## regenerate sql/auth.sql and sql/calls.sql (PostgreSQL DDL) from the migrations
	AUTH_DATABASE_URL=postgresql://clickcall@db/clickcall_auth $(BIN)/auth-server db upgrade --sql 2>/dev/null > sql/auth.sql
	CALL_DATABASE_URL=postgresql://clickcall@db/clickcall_calls $(BIN)/call-api db upgrade --sql 2>/dev/null > sql/calls.sql

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean: ## undo `make run` and the test caches (keeps .venv)
	rm -rf var instance .pytest_cache .ruff_cache .mypy_cache .hypothesis tests/artifacts
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: bench
bench: ## benchmark under gunicorn + wrk (QUICK=1: short runs); writes bench/results.json
	bash bench/install_tools.sh
	$(BIN)/python bench/run.py $(if $(filter-out 0,$(QUICK)),--quick) $(BENCH_ARGS)

.PHONY: faults soak
faults: ## fault injection at full scale on a throwaway PostgreSQL cluster (`make test` runs the short version)
	FAULTS_SCALE=full $(BIN)/python -m pytest tests/faults -m "not soak" $(PYTEST_ARGS)

soak: ## SOAK_SECONDS (default 600) of mixed load: no errors, flat RSS per worker (not in CI)
	SOAK_SECONDS=$(or $(SOAK_SECONDS),600) $(BIN)/python -m pytest tests/faults -m soak $(PYTEST_ARGS)
