# Two commands on a fresh machine: `make demo` and `make test`. Everything is installed into .venv,
# once: a second call reinstalls nothing unless pyproject.toml changed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned: without it pip would resolve a bare torch requirement to a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# Whatever the targets start through PATH (`python3` in the MLproject commands, `mlflow`, `uvicorn`) comes
# from .venv, without the user activating it.
export PATH := $(abspath $(VENV))/bin:$(PATH)

# `make demo CLIP=b16,b32 AVA_DIR=/data/AVA_dataset` runs the same workflow on real models and data.
CLIP ?=
AVA_DIR ?=

.PHONY: install demo test test-fast docs docs-serve docs-pictures clean clean-demo

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[test,spark,docs,onnx]"
	touch $@

$(VENV)/.installed-docs: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) experiments/demo.py --clips "$(CLIP)" --ava-dir "$(AVA_DIR)"

# Test files run side by side in worker processes (one per core, at most 4), each file whole in one worker so its
# module fixtures are built once, the Spark files in the same one; the longest start first (tests/conftest.py).
PYTEST_WORKERS ?= --numprocesses auto --maxprocesses 4 --dist loadgroup

test: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_WORKERS)

test-fast: $(VENV)/.installed-test
	$(PY) -m pytest $(PYTEST_WORKERS) -m "not slow"

# The manual (docs/*.md) as a site in site/, strictly: a warning, a broken link or a page missing from the
# navigation fails the build.
docs: $(VENV)/.installed-docs
	$(PY) -m sphinx -W --keep-going -b html -q docs site
	@echo "built site/index.html"

# The pictures the pages show, made from a demo run by the current code (needs Debian's chromium).
docs-pictures: $(VENV)/.installed-test
	$(PY) experiments/docs_pictures.py

DOCS_PORT ?= 8000
docs-serve: docs
	$(PY) -m http.server --bind 127.0.0.1 --directory site $(DOCS_PORT)

clean:
	rm -rf $(VENV) build site src/*.egg-info .pytest_cache

clean-demo:  # the demo's tracking store, artifacts and data
	rm -rf mlflow.db data/demo data/cache && find mlruns -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
