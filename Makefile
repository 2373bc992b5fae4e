# The two commands a newcomer needs are `make demo` and `make test`; both go through `make build`,
# which installs everything the project needs on a machine that has only Rust and Python 3.
# Each step is a file target, so `make build` does nothing when all is up to date.

PYTHON    ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
TARGET    := wasm32-wasip2
WASM_OUT  := target/$(TARGET)/release/raceway_core.wasm
WASM_PKG  := host-python/raceway/_wasm/raceway_core.wasm
CORE_SRC  := $(shell find core-wasm/src wit -type f) Cargo.toml Cargo.lock core-wasm/Cargo.toml .cargo/config.toml
STAMP     := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.bench-installed

.PHONY: build test test-rust test-python demo bench clean browser node test-node wheel lint

build: $(WASM_PKG) $(STAMP)

$(WASM_OUT): $(CORE_SRC)
	@rustup target list --installed | grep -qx $(TARGET) || rustup target add $(TARGET)
	cargo build --release --locked --target $(TARGET) -p raceway-core
	@touch $@

$(WASM_PKG): $(WASM_OUT)
	@mkdir -p $(dir $@)
	cp $< $@

$(STAMP): host-python/pyproject.toml requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@# The distribution was renamed raceway -> raceway-wasm: drop the old editable install, if any.
	@$(PY) -m pip uninstall --quiet --disable-pip-version-check -y raceway >/dev/null 2>&1 || true
	$(PY) -m pip install --quiet --disable-pip-version-check -e host-python -r requirements-dev.txt
	@touch $@

test: build node lint test-rust test-python test-node

# The distribution (PyPI name raceway-wasm, import name raceway): a py3-none-any wheel and an
# sdist in dist/, built by `build` (from PyPI) from host-python/. The component is their only
# compiled artefact, so neither needs Rust to install; tests/test_wheel.py installs the wheel
# into a fresh virtual environment without cargo/rustc on PATH and runs a traced program.
wheel: build
	rm -rf dist/raceway_wasm-* host-python/build
	$(PY) -m build --outdir dist host-python
	@ls dist/raceway_wasm-*-py3-none-any.whl dist/raceway_wasm-*.tar.gz

# The Node host (host-node/, docs/hosts.md): the same component through jco, where `node` and
# `npm` are on PATH; elsewhere `node` and `test-node` say so and do nothing. `node` installs the
# pinned packages (npm ci, from host-node/package-lock.json) and transpiles the component into
# host-node/generated/ (not committed); test-node checks the typings and runs `node --test`.
NODE_DEPS := host-node/node_modules/.package-lock.json
NODE_CORE := host-node/generated/raceway_core.js
HAVE_NODE := $(shell command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && echo yes)

ifeq ($(HAVE_NODE),yes)
node: $(NODE_CORE)

$(NODE_DEPS): host-node/package.json host-node/package-lock.json
	cd host-node && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(NODE_CORE): $(WASM_PKG) $(NODE_DEPS) host-node/scripts/transpile.mjs host-node/src/sandbox.js
	cd host-node && node scripts/transpile.mjs

test-node: node
	cd host-node && npm run --silent typecheck
	cd host-node && node --test test/
else
node test-node:
	@echo "$@: skipped: node (with npm) is not on PATH, so the Node host (host-node/) is not built or tested"
endif

test-rust:
	cargo test --locked -p raceway-core

test-python: build
	$(PY) -m pytest

# The package's static checks (issue 14): `mypy --strict` and `ruff` (lint rules and format),
# configured in host-python/pyproject.toml, where the chosen rule set is written down.
lint: build
	cd host-python && ../$(PY) -m mypy
	$(PY) -m ruff check host-python/raceway host-python/raceway_pytest
	$(PY) -m ruff format --check host-python/raceway host-python/raceway_pytest

# Headless Chromium for the HTML report's browser test: installed from Debian when run as root
# and missing; otherwise nothing (the test skips itself when no browser is found).
browser:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome >/dev/null 2>&1; then \
		:; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "browser: no chromium, and not root with apt-get: the browser test will be skipped"; \
	fi

demo: build
	$(PY) -m raceway demo

$(BENCH_STAMP): benchmarks/requirements.txt $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt
	@touch $@

bench: build $(BENCH_STAMP)
	$(PY) benchmarks/run.py

clean:
	cargo clean
	rm -rf $(VENV) $(WASM_PKG) dist host-python/build
