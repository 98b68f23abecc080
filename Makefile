# All targets set up .venv on a fresh machine. torch is pinned by constraints.txt to the local CPU
# build so that nothing here replaces it with a CUDA wheel.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PIP     := $(BIN)/pip install -c constraints.txt

# pytest-xdist workers where there are more than two cores (each worker then gets its share of
# the cores, tests/conftest.py); on two cores one process with two threads is as fast.
NPROC   := $(shell nproc 2>/dev/null || echo 1)
WORKERS ?= $(if $(filter 1 2,$(NPROC)),,-n $(NPROC))

.PHONY: venv demo test test-slow bench bench-all gpu-check docs clean

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
	$(BIN)/python -m pytest -q -p no:cacheprovider $(WORKERS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow $(WORKERS)

# Every solver, SMC target and posterior sampler on the device against float64 CPU results, the
# recipes fitted there, sampler overhead against diffusers: experiments/results/gpu.md.
# DEVICE=auto uses CUDA where there is one; DEVICE=cpu is the smoke run the suite also does.
DEVICE ?= auto
gpu-check: $(VENV)/.bench
	$(BIN)/python experiments/gpu_check.py --device $(DEVICE)

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
