# Two commands on a fresh machine: `make demo` (the offline demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= --run-pipeline
TEST_PROCESSES ?= 3

.PHONY: demo test lint install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/llmsched demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The suite on TEST_PROCESSES processes, handed out two tests at a time so that the slow
# ones (collected first, tests/conftest.py) spread over the processes; then alone the
# tests marked `serial` (they measure their process's memory, which load would blur).
test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) -n $(TEST_PROCESSES) --maxschedchunk 2 -m "not serial"
	$(BIN)/python -m pytest $(PYTEST_ARGS) -m serial

clean:
	rm -rf $(VENV) .pytest_cache .coverage htmlcov
