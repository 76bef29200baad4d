# Every target bootstraps .venv by itself: a fresh clone needs only python3 (3.11+) and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PACKAGES := -e ./core -e ./plugins/tempfile -e ./plugins/policies -e ./plugins/redis -e ./plugins/s3 -e ./plugins/fsspec -e ".[all]" \
	-e ./examples/plugin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
QUICK ?=

.PHONY: venv demo test sim stress lint format bench docs dist clean redis-server azurite

venv: $(STAMP)

$(STAMP): pyproject.toml core/pyproject.toml $(wildcard plugins/*/pyproject.toml examples/*/pyproject.toml) requirements/*.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt $(PACKAGES) \
		-r requirements/dev.txt -r requirements/bench.txt -r requirements/docs.txt
	@touch $@

# The tests start their own redis-server on a free loopback port; they need the binary.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
		else \
			echo "redis-server is missing: install it (sudo apt-get install redis-server) and re-run"; exit 1; \
		fi; }

# Azurite, Azure's storage emulator, for the fsspec store's Azure tests: from npm into the
# virtualenv (the machine's Node.js runs it), so a fresh clone needs nothing installed by hand.
AZURITE_VERSION := 3.37.0
AZURITE := $(VENV)/azurite/node_modules/.bin/azurite-blob
azurite: $(AZURITE)

$(AZURITE): | $(STAMP)
	@command -v npm >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
		else \
			echo "npm is missing: install Node.js and npm (sudo apt-get install nodejs npm) and re-run"; exit 1; \
		fi; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@$(AZURITE_VERSION)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

test: $(STAMP) redis-server azurite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The engine's deterministic simulation: every seed a schedule of processes and faults
# (make test runs a few thousand), then the ranged seeds, which read large objects in blocks
# too. SEEDS=N, RANGED_SEEDS=N to change how many; a failing seed prints its replay.
SEEDS ?= 100000
RANGED_SEEDS ?= 50000
sim: $(STAMP)
	$(BIN)/python tests/sim.py --seeds $(SEEDS) --jobs 2
	$(BIN)/python tests/sim.py --ranged --seeds $(RANGED_SEEDS) --jobs 2

# The long fault runs: 200 random SIGKILLs of a writer (make test runs 20).
stress: $(STAMP)
	CSF_CRASH_RUNS=200 $(BIN)/python -m pytest tests/test_crash_safety.py -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy core/src plugins/tempfile/src plugins/redis/src plugins/s3/src plugins/policies/src \
		plugins/fsspec/src plugins/otel/src examples/plugin/src

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP) redis-server azurite
	$(BIN)/python -m benchmarks $(if $(QUICK),--quick) $(if $(OUT),--out $(OUT))

# The docs site (mkdocs, material theme, API reference from the docstrings) into site/.
# --strict turns every warning (a broken link, an unknown reference) into a failure.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# A wheel and an sdist of every distribution: the bundle, the core and each plugins/*/ folder.
DIST ?= dist
DISTRIBUTIONS := . core $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))
dist: $(STAMP)
	rm -rf $(DIST)
	for project in $(DISTRIBUTIONS); do \
		$(BIN)/python -m build --no-isolation --outdir $(DIST) $$project || exit 1; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis site dist
