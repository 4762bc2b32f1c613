# monoport: `make run` serves the demo app on https://localhost:8443/,
# `make test` installs everything the tests need and runs them all.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

.PHONY: run test setup setup-dev system-deps node bench clean check docs

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

node:
	@if [ -f webapp/package.json ]; then \
		command -v npm >/dev/null 2>&1 || { echo "npm is needed for the chat's browser client: apt-get install npm (or ./scripts/system-deps.sh)" >&2; exit 1; }; \
		if [ ! -d webapp/node_modules ] || [ webapp/package-lock.json -nt webapp/node_modules ]; then \
			cd webapp && npm ci --no-audit --no-fund --loglevel=error && touch node_modules; \
		fi; \
	fi

setup: $(VENV)/.installed node

setup-dev: $(VENV)/.installed-dev node

system-deps:
	./scripts/system-deps.sh

run: setup
	$(PY) -m monoport $(ARGS)

check: setup
	$(PY) -m monoport --check $(ARGS)

# mypy first (seconds; its settings are in pyproject.toml), then every test.
test: system-deps setup-dev
	$(PY) -m mypy
	$(PY) -m pytest $(PYTEST_ARGS)

$(VENV)/.installed-bench: $(VENV)/.installed-dev bench/requirements.txt
	$(PIP) install -q -r bench/requirements.txt
	touch $@

# Installs stunnel4, haproxy, nginx and wrk itself when missing (apt); about 17 minutes on 2 cores.
docs: setup
	$(PY) -m monoport.ops.docs --write README.md

bench: setup-dev $(VENV)/.installed-bench
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) webapp/node_modules .pytest_cache .mypy_cache test-artifacts
