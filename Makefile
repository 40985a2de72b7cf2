# The two commands a newcomer needs:  make run  (quickstart: demo data + server)   make test  (lint + test suite)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
# Two installs: `make run` needs the package only; `make test` adds the dev tools (pytest, ruff, SDKs, schemathesis).
# Either order works: the dev install also satisfies the run stamp, and a run install is topped up by `make test`.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench clean sysdeps axe

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mmsearch needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@ $(RUN_STAMP)

# CJK font for the OCR tests and the demo images, Chromium for the console's browser tests (Debian); skipped
# with a note where apt is not ours to use.
sysdeps:
	@if [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei; }; \
	  else echo "note: install fonts-wqy-microhei (Debian) for the OCR tests"; fi; \
	fi
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; \
	  else echo "note: install chromium (Debian) for the console's browser tests"; fi; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }; \
	  else echo "note: install postgresql (Debian) for the catalog's PostgreSQL tests"; fi; \
	fi

run: $(RUN_STAMP)
	$(BIN)/mmsearch quickstart

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

# The IQS SDK as the spec pins it (1.7.1), beside the latest one in .venv: tests/test_acs3.py runs it in a subprocess.
SDK171 := build/sdk/iqs171
$(SDK171)/.done: $(DEV_STAMP)
	$(BIN)/pip install --quiet --target $(SDK171) alibabacloud_iqs20241111==1.7.1
	@touch $@

# axe-core, the accessibility rules tests/test_console_a11y.py runs in Chromium: a test tool, fetched pinned from the
# npm registry (its integrity hash checked; no npm needed) into build/axe, never into src/.
AXE_VERSION := 4.14.1
AXE_INTEGRITY := sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
AXE := build/axe/.axe-core-$(AXE_VERSION)
$(AXE): $(BIN)/python
	rm -rf build/axe
	$(BIN)/python tests/tools/fetch_npm.py axe-core $(AXE_VERSION) $(AXE_INTEGRITY) build/axe axe.min.js LICENSE
	@touch $@

axe: $(AXE)

test: sysdeps $(DEV_STAMP) lint $(SDK171)/.done $(AXE)
	$(BIN)/pytest -q

# The bench extra adds the floor's engines (tantivy, faiss-cpu) that bench/engine.py compares against.
BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@ $(DEV_STAMP) $(RUN_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/engine.py --n 100000

clean:
	rm -rf $(VENV) mmsearch-data .pytest_cache .ruff_cache build
