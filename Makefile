# Two commands: `make run` (install, then serve the offline pipeline on :7860) and `make test`.
# Dependencies are pinned with hashes in requirements.lock / requirements-test.lock
# (regenerate with `make lock`). Repeat runs reuse .venv and skip the install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# llama-cpp-python is source-only on PyPI: build portable code (pip caches the wheel).
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test lint lock models clean deps-debian client

run: $(VENV)/.runtime
	$(BIN)/voicebot serve --pipeline pipelines/local.yaml --port 7860

test: deps-debian client $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

# Debian packages the tests use, installed when missing and apt-get is there (root, else sudo):
# haproxy (tests/test_load_balancer.py, deploy/haproxy/haproxy.cfg); coturn's turnserver
# (tests/test_turn.py); chromium (tests/test_browser_client.py); npm (`make client`).
deps-debian:
	@missing=""; \
	for pair in haproxy:haproxy coturn:turnserver chromium:chromium npm:npm; do \
		PATH="$$PATH:/usr/sbin:/sbin" command -v $${pair#*:} >/dev/null 2>&1 || \
			missing="$$missing $${pair%%:*}"; \
	done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null 2>&1; then \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "installing$$missing (Debian) for the tests"; \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# The page's script (transports/static/app.js): Pipecat's client-js and SmallWebRTC transport from
# npm, pinned by client/package-lock.json, bundled with the page's code (client/src) by esbuild.
# The bundle is committed, so `make run` needs no Node. `make test` rebuilds it from the lock
# file; in CI a rebuilt bundle that differs from the committed one fails the run.
CLIENT_BUNDLE := transports/static/app.js
client:
	cd client && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build
	@if [ "$$CI" = true ] && git rev-parse --git-dir >/dev/null 2>&1 && \
		! git diff --quiet -- $(CLIENT_BUNDLE); then \
		echo "$(CLIENT_BUNDLE) differs from its build from client/: commit the rebuilt bundle"; \
		exit 1; \
	fi

lint: $(VENV)/.test
	$(BIN)/ruff check .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r requirements-bootstrap.lock

$(VENV)/.runtime: requirements.lock pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --require-hashes -r requirements.lock
	$(PIP) install --quiet --no-deps -e .
	$(BIN)/voicebot models
	touch $@

$(VENV)/.test: requirements-test.lock $(VENV)/.runtime
	$(PIP) install --quiet --require-hashes -r requirements-test.lock
	touch $@

models: $(VENV)/.runtime
	$(BIN)/voicebot models

lock:
	uv pip compile pyproject.toml --extra offline --extra piper -o requirements.lock \
		--generate-hashes --python-version 3.11 --no-header
	uv pip compile pyproject.toml --extra offline --extra piper --extra test \
		-c requirements.lock -o requirements-test.lock --generate-hashes \
		--python-version 3.11 --no-header

clean:
	rm -rf $(VENV) build *.egg-info
