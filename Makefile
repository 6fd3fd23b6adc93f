# Two commands on a fresh machine: `make test` (and, later, `make demo`). Everything is installed
# into .venv, once: a second call reinstalls nothing unless pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: without it pip would resolve a bare torch requirement to a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install test test-fast clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest

test-fast: $(VENV)/.installed
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
