# Two commands on a fresh machine: `make run` and `make test`.
# Needs only python3 (>= 3.11), git and make: the Makefile bootstraps uv into .tools/
# and uv builds the locked environment in .venv/.
PYTHON ?= python3
TOOLS  := .tools
UV     := $(TOOLS)/bin/uv
VENV   := .venv
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint typecheck check bench bench-workspace bench-runner bench-github bench-engine bench-web bench-scale chaos sync clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

sync: $(VENV)/.synced

run: sync
	$(VENV)/bin/openase up

# Two test processes by default (pytest-xdist), each with its own embedded PostgreSQL and
# Redis; `make test TEST_WORKERS=1` runs the suite in one process.
TEST_WORKERS ?= 2

test: sync
	$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: sync
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache

typecheck: sync
	$(VENV)/bin/mypy

check: lint typecheck test

bench: sync
	$(VENV)/bin/python -m bench.webhook_intake $(BENCH_ARGS)

bench-workspace: sync
	$(VENV)/bin/python -m bench.workspace_prep $(BENCH_ARGS)

bench-runner: sync
	$(VENV)/bin/python -m bench.runner_overhead $(BENCH_ARGS)

bench-engine: sync
	$(VENV)/bin/python -m bench.engine $(BENCH_ARGS)

bench-github: sync
	$(VENV)/bin/python -m bench.github_client $(BENCH_ARGS)

bench-web: sync
	$(VENV)/bin/python -m bench.web $(BENCH_ARGS)

# Issue 18, target 5: 10,000 tickets, 200 runs on 20 runners, then a second worker and a third
# web process; `make bench-scale BENCH_ARGS="--tickets 500 --runs 20 --runners 4
# --agent-seconds 10"` tries it small; `--help` lists the options.
bench-scale: sync
	$(VENV)/bin/python -m bench.scale $(BENCH_ARGS)

# Faults injected one by one under load (issue 19): `make chaos CHAOS_ARGS="--faults
# redis,postgres --outage-seconds 5"`; `--help` lists the faults and settings.
chaos: sync
	$(VENV)/bin/python -m bench.chaos $(CHAOS_ARGS)

clean:
	rm -rf $(TOOLS) $(VENV) .mypy_cache .ruff_cache .pytest_cache
