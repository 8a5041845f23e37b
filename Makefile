# segops developer tasks. `make help` lists them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install demo demo-api test check lint golden schemas docs bench bench-spark kill-trials

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install segops with its test and lint tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# an editable install leaves segops uncompiled, and with PYTHONDONTWRITEBYTECODE set every
	@# command would compile it again (0.15 s): compile it once, as pip does for a wheel
	$(BIN)/python -m compileall -q segops
	@touch $(STAMP)

demo: install ## Run validate → plan → apply → plan on a temporary copy of manifests/
	@sh scripts/demo.sh $(BIN)/segops

demo-api: install ## Run the bundled workspace against emulated mediarithmics and MoEngage APIs
	$(BIN)/python scripts/demo_api.py

test: install ## Run the test suite (on up to 4 cores)
	$(BIN)/pytest -n auto --maxprocesses=4 --dist loadgroup

check: install ## Lint, format check and type check; changes nothing
	$(BIN)/ruff check segops tests bench emulators scripts
	$(BIN)/ruff format --check segops tests bench emulators scripts
	$(BIN)/mypy

lint: install ## Fix what ruff can fix and format the code
	$(BIN)/ruff check --fix segops tests bench emulators scripts
	$(BIN)/ruff format segops tests bench emulators scripts

golden: install ## Rewrite the golden files of tests/cases (review the diff!)
	SEGOPS_UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_cases.py tests/test_markdown.py

schemas: ## Copy schemas/ into the package (the test suite checks they match)
	cp schemas/*.json segops/schemas/

docs: install ## Regenerate docs/configuration.md from the JSON Schemas
	$(BIN)/python scripts/gen_config_docs.py

kill-trials: install ## Kill apply at named points and timed moments, TRIALS times (default 2000); THREADS=2 for two engine threads
	$(BIN)/python scripts/kill_trials.py --trials $${TRIALS:-2000} --threads $${THREADS:-1}

bench: install ## Time start-up (--version, --help, validate), then `segops plan` at 1e6 and 1e7 members (local file, S3 server, PostgreSQL) against an ad-hoc DuckDB anti-join; ARGS="--sizes 100000 --repeat 1" for a quick run
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/bench.py $(ARGS)

bench-spark: install ## `segops plan` on the Spark engine (local mode) beside DuckDB at 1e7 and 1e8 members, with the sizing estimate; ARGS="--sizes 1e6" for a quick run
	$(BIN)/python bench/spark.py $(ARGS)
