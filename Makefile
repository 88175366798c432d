# The two commands: `make demo` and `make test`. Both create .venv and install everything the project needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
SIZE ?= small

.PHONY: demo test install lint schema bench clean check-python sysdeps

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || \
	  { echo "twin needs Python >= 3.11 (found: $$($(PYTHON) --version 2>&1)); set PYTHON=/path/to/python3.11"; exit 1; }

# Re-install only when pyproject.toml changes.
$(STAMP): pyproject.toml | check-python
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# System packages: Chromium (viewer end-to-end test), GDAL's ogrinfo (OGC API Features test), Node/npm (viewer).
SYSDEPS := chromium:chromium ogrinfo:gdal-bin npm:npm
sysdeps:
	@missing=""; for pair in $(SYSDEPS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "twin needs these Debian packages:$$missing — run: sudo apt-get install$$missing"; exit 1; fi; \
	fi

# npm packages (CesiumJS for the viewer, gltf-validator for the tests); re-installed when package.json changes.
$(NODE_STAMP): package.json package-lock.json | sysdeps
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

# make demo [SIZE=tiny|small|medium|large] [SEED=N] [HOST=0.0.0.0] [PORT=8000]; each size and seed has its own
# folder (demo-city[-SIZE][-seedN]) and store (twin-store[-SIZE][-seedN])
demo: install
	$(VENV)/bin/twin demo --size $(SIZE) $(if $(SEED),--seed $(SEED)) $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

schema: install
	$(PY) -m data_models.generate

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m data_models.generate --check
	$(VENV)/bin/pytest

bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || \
	  { echo "the tile-serving benchmark needs wrk: sudo apt-get install wrk"; exit 1; }
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	$(PY) bench/run.py $(BENCH)

clean:
	rm -rf $(VENV) node_modules twin-store twin-store-* demo-city demo-city-* .pytest_cache .ruff_cache
