# Two commands are the quick start: `make serve` and `make test`.
# Each installs what it needs first (scripts/setup.sh is idempotent and fast when up to date).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
GATEWAY_PORT ?= 8080
HOST ?= 127.0.0.1
PYTEST_ARGS ?=

.PHONY: setup serve doctor test test-fast lint bench bench-readme clean

setup:
	@bash scripts/setup.sh

serve: setup
	@$(VENV)/bin/ds-triton serve --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) \
		--gateway-port $(GATEWAY_PORT)

# The checks run with the venv first on PATH, as `make serve` gives tritonserver.
doctor: setup
	@PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/ds-triton doctor --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

lint: setup
	@$(VENV)/bin/ruff check server client perf gateway tests scripts docker
	@$(VENV)/bin/mypy server/ds_triton client/ds_triton_client client/ds_triton_interface perf/ds_triton_perf gateway/ds_triton_gateway docker/grafana/dashboard.py

test: setup lint
	@$(PY) -m pytest -ra $(PYTEST_ARGS)

test-fast: setup
	@$(PY) -m pytest -ra -m "not server and not slow" $(PYTEST_ARGS)

# `make bench`: the full suite, bounded: no point starts after BENCH_BUDGET_MIN minutes (the rest are
# skipped with a note) and the memory soak shortens to fit. BENCH_QUICK=1: short runs, fewer points.
# BENCH_ARGS: more options, e.g. BENCH_ARGS="--only overload soak".
BENCH_BUDGET_MIN ?= 33
BENCH_ARGS ?=
bench: setup
	@$(VENV)/bin/ds-triton-perf bench --budget-min $(BENCH_BUDGET_MIN) $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)

# The README's "Latest results" block from the newest run (or RESULTS=perf/results/<ts>).
bench-readme: setup
	@$(VENV)/bin/ds-triton-perf readme $(or $(RESULTS),$$(ls -d perf/results/*/ | sort | tail -n 1)) --write README.md

clean:
	rm -rf .run perf/results .pytest_cache .mypy_cache .ruff_cache
