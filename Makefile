# Every target bootstraps its own virtualenv: a fresh machine needs only python3 (3.11+).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The demo and the UI share one Dagster instance and one local data folder, so what `make demo`
# ran can be inspected with `make dev`.
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export SKILL_PIPELINE_HOME ?= $(CURDIR)/.skill_pipeline
PORT ?= 3000

.PHONY: install demo dev test test-fast bench bench-e2e validate clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# A local instance: SQLite storage in $(DAGSTER_HOME), telemetry off, failed runs retried by the
# daemon, and run monitoring, which fails a run whose process died (Ctrl-C in `make dev`, a kill) so
# that it is retried on the next start instead of staying STARTED (production: deploy/dagster.yaml).
$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\nrun_retries:\n  enabled: true\n  max_retries: 2\n  retry_on_asset_or_op_failure: true\nrun_monitoring:\n  enabled: true\n  start_timeout_seconds: 180\n  poll_interval_seconds: 30\n' > $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m skill_pipeline.demo

# The embedded stores start empty: seed the demo app first (idempotent).
dev: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m skill_pipeline.demo.stores
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

# The Postgres instance test starts a throwaway PostgreSQL: the script installs the server from the
# OS packages where it is missing (CI).
test: $(STAMP)
	bash scripts/ensure_postgres.sh
	$(BIN)/python -m pytest

# The tests not marked slow (no PostgreSQL, no dagster dev): the inner loop. CI runs `make test`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

validate: $(STAMP)
	$(BIN)/dagster definitions validate -w workspace.yaml

bench: $(STAMP)
	$(BIN)/python -m benchmarks

# End to end through a running Dagster (dagster dev on deploy/dagster.yaml, throwaway PostgreSQL, the
# Anthropic fake answering in 3 s): first tick over SKILLS new skills to every dataset. LIMIT=R/W makes
# the fake answer 429 above R requests per W seconds. Figures: benchmarks/RESULTS.md (hand-run section).
SKILLS ?= 100
LIMIT ?=
bench-e2e: $(STAMP)
	bash scripts/ensure_postgres.sh
	$(BIN)/python -m benchmarks.production_volume --skills $(SKILLS) $(if $(LIMIT),--limit $(LIMIT)) --record .bench-e2e.jsonl
	$(BIN)/python -m benchmarks.production_volume --write-results .bench-e2e.jsonl

clean:
	rm -rf $(DAGSTER_HOME) $(SKILL_PIPELINE_HOME)
