# pushassist: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need: uv (into .tools/) and the locked environment (into .venv/).

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
RUN := $(UV) run --frozen --no-sync
export DAGSTER_HOME := $(CURDIR)/dagster_home

DEMO_DIR := data/demo
DEMO_START := 2024-01-01
DEMO_END := 2024-01-31

.PHONY: install demo run ui test lint format clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet
	touch $@

install: .venv/.synced

## Run the whole job on a generated demo month (GA4 and Braze exports) and print the report.
## The generator also writes the settings the month needs (Braze custom events that are
## conversions) beside the landing root.
demo: install
	rm -rf $(DEMO_DIR)
	$(RUN) python -m pipeline.demo --landing $(DEMO_DIR)/landing --settings $(DEMO_DIR)/pushassist.yaml
	@PUSHASSIST_SETTINGS=$(DEMO_DIR)/pushassist.yaml PUSHASSIST_LANDING=$(DEMO_DIR)/landing \
		PUSHASSIST_WAREHOUSE=$(DEMO_DIR)/pushassist.duckdb \
		$(RUN) pushassist run $(DEMO_START) $(DEMO_END) --log $(DEMO_DIR)/run.log
	$(RUN) python -m pipeline.report --warehouse $(DEMO_DIR)/pushassist.duckdb \
		--truth $(DEMO_DIR)/demo_truth

## Materialize every asset for START..END on your own landing files (see README).
run: install
	@test -n "$(START)" -a -n "$(END)" || (echo "usage: make run START=YYYY-MM-DD END=YYYY-MM-DD"; exit 2)
	@$(RUN) pushassist run $(START) $(END) --log data/run.log
	$(RUN) python -m pipeline.report

## Open the Dagster UI on http://127.0.0.1:3000
ui: install
	$(RUN) dagster dev -w workspace.yaml

test: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) pytest

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

clean:
	rm -rf data .venv .tools .pytest_cache .ruff_cache
	find dagster_home -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
