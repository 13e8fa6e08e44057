# Every workflow step and every README command goes through these targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Use uv from PATH; if there is none, install it into .tools/ (a plain venv, works anywhere
# python3 does, needs no root and leaves the system Python alone).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --frozen --no-sync

.PHONY: help install run test test-fast lint bench-pipeline clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv

install: $(UV) ## Install uv if missing, then the locked environment (uv.lock)
	$(UV) sync --frozen --compile-bytecode

run: install ## Run the whole DVC pipeline (only stages whose inputs changed)
	$(RUN) dvc repro

test: install ## Run the whole test suite, slow real-service tests included
	$(RUN) pytest

test-fast: install ## Unit tests only (skips dvc end-to-end and MLflow server tests)
	$(RUN) pytest -m "not slow"

lint: install ## pre-commit on every file: ruff lint + format, hygiene hooks
	$(RUN) pre-commit run --all-files --show-diff-on-failure

bench-pipeline: install ## Per-stage wall time and peak memory at 100k and 1M rows
	$(RUN) python benchmarks/pipeline.py

clean: ## Remove pipeline outputs and local tracking data (not the DVC cache)
	rm -rf data/*.parquet models/model.joblib reports/train_timing.json reports/validation_failure.json mlflow.db mlruns dvc_plots
