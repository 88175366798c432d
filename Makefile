# The two commands: `make demo` and `make test`. Both create .venv and install everything the project needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SIZE ?= small

.PHONY: demo test install lint schema bench clean check-python

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "twin needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1; }

# Re-install only when pyproject.toml changes.
$(STAMP): pyproject.toml | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/twin demo --size $(SIZE)

lint: install
	$(VENV)/bin/ruff check .

schema: install
	$(PY) -m data_models.generate

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m data_models.generate --check
	$(VENV)/bin/pytest

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) twin-store demo-city .pytest_cache .ruff_cache
