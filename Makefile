# lxdex: `make run` starts the main job, `make test` runs every test,
# `make bench` measures. Each sets itself up first (venv + release build).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deps-stamp
EXT    := $(VENV)/.ext-stamp
RUST_SOURCES := $(shell find crates -name '*.rs' -o -name Cargo.toml) Cargo.toml pyproject.toml

.PHONY: setup system build run demo test test-rust test-python test-slow bench clean

setup: $(EXT)

# System packages the tests need (a PostgreSQL server for the history store's
# tests, Debian's chromium for the web UI test); installs them when run as root.
# `make run` does not need them.
system:
	bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.9,<2" "numpy>=2.0" "typer>=0.12" "rich>=13" "cryptography>=42" \
		"msgspec>=0.19" "pyzmq>=26" "starlette>=0.40" "uvicorn[standard]>=0.30" "httpx>=0.27" \
		"prometheus-client>=0.20" "psycopg[binary]>=3.1" "pytest>=8" "hypothesis>=6.100" "websockets>=13" \
		"playwright>=1.40" nanobook orderly-chaos "schemathesis>=4.0" "ccxt>=4.4"
	touch $@

# The extension is always built in release mode: tests and benchmarks share it.
$(EXT): $(STAMP) $(RUST_SOURCES)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet
	touch $@

build: $(EXT)

run: demo

demo: $(EXT)
	$(PY) -m lxdex demo

test: system test-rust test-slow test-python

test-rust:
	cargo test --quiet -p lxdex-engine

test-python: $(EXT)
	$(PY) -m pytest -q -m "not slow"

# Slow tests (cluster, crash, soak) run in their own step, before the main
# pytest run so that the last runner line is the main one. Exit 5 = none yet.
test-slow: $(EXT)
	$(PY) -m pytest -q -m slow; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]

bench: $(EXT)
	mkdir -p bench-results
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench engine --output bench-results/engine.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench exchange --output bench-results/exchange.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench journal --output bench-results/journal.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench node --seconds 30 --output bench-results/node.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench recovery --output bench-results/recovery.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench api --output bench-results/api.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench api --no-reply-cache --output bench-results/api-no-cache.json
	OPENBLAS_NUM_THREADS=1 $(PY) -m lxdex bench ws --output bench-results/ws.json

clean:
	rm -rf $(VENV) target
