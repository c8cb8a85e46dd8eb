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

.PHONY: run test lint lock models clean

run: $(VENV)/.runtime
	$(BIN)/voicebot serve --pipeline pipelines/local.yaml --port 7860

test: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

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
