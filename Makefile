# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint check clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamp files so a second `make run` does not reinstall; pyproject changes trigger a reinstall.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(PY) run.py serve

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(VENV)/.installed-test lint
	@# Byte-compiled once here: the suite starts run.py and other processes hundreds of times,
	@# and with PYTHONDONTWRITEBYTECODE set (as on CI machines) each would compile them again.
	$(PY) -m compileall -q -j 0 cli delivery guide scheduler web wiring bench tests run.py
	$(PY) run.py lessons check
	@# One worker per core, most tests wait on subprocesses and sockets; at most four, since
	@# each worker starts its own throwaway PostgreSQL (tests/pgserver.py).
	$(PY) -m pytest -n auto --maxprocesses 4

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache
