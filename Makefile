# All targets set up .venv on a fresh machine. torch is pinned by constraints.txt to the local CPU
# build so that nothing here replaces it with a CUDA wheel.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip install -c constraints.txt

.PHONY: venv demo test test-slow bench bench-all docs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -q torch==2.13.0
	$(PIP) -q -e ".[test,viz]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m flowbridge.demo --out outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

$(VENV)/.bench: $(STAMP)
	$(PIP) -q -e ".[bench]"
	$(PIP) -q --no-deps torchcfm
	touch $(VENV)/.bench

# `bench` is the solver benchmark (< 15 min); `bench-all` runs every experiments/bench_*.py.
bench: $(VENV)/.bench
	$(BIN)/python experiments/bench_solvers.py

bench-all: $(VENV)/.bench
	for script in experiments/bench_*.py; do $(BIN)/python $$script || exit 1; done

$(VENV)/.docs: $(STAMP)
	$(PIP) -q -e ".[docs]"
	touch $(VENV)/.docs

# The documentation site (mkdocs-material + mkdocstrings) into site/; any warning fails the build.
docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) outputs site
