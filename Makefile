# Both commands bootstrap the virtual environment they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check backend tui tests
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check backend tui tests
	$(BIN)/ruff format --check backend tui tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python tests/bench/bench_command_plane.py
	$(BIN)/python tests/bench/bench_long_lines.py
	$(BIN)/python tests/bench/bench_report.py
	$(BIN)/python tests/bench/bench_console.py

demo: $(STAMP)
	$(BIN)/miglab demo

clean:
	rm -rf $(VENV) build *.egg-info
