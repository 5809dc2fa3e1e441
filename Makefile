# shoal's developer entry points. The README shows two: `make up` and `make test`.
SHELL := /bin/bash
# The distribution's python3 when it is new enough, else python3 on PATH (scripts/pick-python).
PYTHON ?= $(shell scripts/pick-python)
VENV := .venv
BIN := $(VENV)/bin
EXAMPLE ?= examples/shop/shoal.yaml

.PHONY: up test lint bench bench-quick docs clean venv deps

# A virtualenv with shoal installed (editable). Re-installs when pyproject.toml changes.
$(BIN)/python:
	@scripts/ensure-venv $(PYTHON) $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

## make up: create .venv, install shoal, run the example app on the embedded default runtimes.
up: $(VENV)/.installed
	$(BIN)/shoal validate -q -f $(EXAMPLE)
	$(BIN)/shoal up -f $(EXAMPLE)

## make test: install what the tests need, then lint, types, import contracts and the whole suite.
# System packages of the backend suites (apt-get, as root on Debian), one line per backend.
TEST_PACKAGES_CONTAINERS := docker.io busybox-static mmdebstrap
TEST_PACKAGES_VMS := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs gcc libc6-dev make flex bison bc libelf-dev xz-utils
TEST_PACKAGES_EXPORTERS := cloud-init systemd docker.io
deps: $(VENV)/.installed-dev
	@scripts/install-test-deps $(TEST_PACKAGES_CONTAINERS) $(TEST_PACKAGES_VMS) $(TEST_PACKAGES_EXPORTERS)
	@scripts/start-dockerd
	@$(BIN)/python scripts/bake-vm

lint: deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

## make bench: every benchmark in bench/, a table, and bench/results/latest.json.
bench: deps
	@scripts/install-test-deps wrk nginx
	$(BIN)/python -m bench

bench-quick: deps
	@scripts/install-test-deps wrk nginx
	$(BIN)/python -m bench --quick

## make docs: regenerate the manifest reference inside README.md from the schema.
docs: $(VENV)/.installed
	$(BIN)/python -c "from shoal.manifest.reference import update; update('README.md')"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
