# MASP Exchange — two commands: `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
# Use uv from PATH when present; otherwise bring our own pinned copy into .tools/
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
VENV := .venv
MASP := $(VENV)/bin/masp
export MASP_STATE_DIR ?= var

.PHONY: help install run test check lint demo clean schemas audit-deps

help:
	@echo "make run      install if needed, initialise ./var, serve the demo on http://127.0.0.1:8000"
	@echo "make test     run the whole test suite (needs RabbitMQ and PostgreSQL on 127.0.0.1)"
	@echo "make install  set up .venv from uv.lock (idempotent)"
	@echo "make check    ruff, mypy --strict, import contracts"
	@echo "make audit-deps  known vulnerabilities in the locked dependencies (pip-audit)"
	@echo "make demo     play the demonstration case and verify the outcomes"

$(TOOLS)/bin/uv:
	@echo "uv not found: installing uv $(UV_VERSION) into $(TOOLS)/"
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-groups --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed

run: install
	@$(MASP) init
	@exec $(MASP) serve --demo

demo: install
	$(MASP) demo --out $${OUT:-/tmp/masp-demo}

test: install
	@scripts/test-preflight
	$(VENV)/bin/pytest -q

check: install
	$(VENV)/bin/ruff check broker adapters schemas tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

audit-deps: install
	UV=$(UV) $(VENV)/bin/python .ci/audit_deps.py

schemas: install
	$(VENV)/bin/python -m schemas.export

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
