PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install run test test-sqlite lint format clean

install: ## create .venv and install the project with its dev extras
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'

run: ## both services on the embedded default (SQLite under var/)
	$(BIN)/python manage.py

test: ## the whole suite: PostgreSQL when reachable (mandatory with CI=true) and SQLite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var .pytest_cache .ruff_cache
