# ModelDeck: `make run` starts the platform, `make test` runs lint, types and tests.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
# Never fetch a Python build: use the machine's 3.11.
export UV_PYTHON_DOWNLOADS := never
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv/bin

.PHONY: run test install lint typecheck pytest bench clean

# uv is bootstrapped with pip when the machine does not have it.
.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

install: $(filter .tools/bin/uv,$(UV))
	$(UV) sync --frozen --extra convert --python $(PYTHON)

run: install
	$(VENV)/python manage.py runstack

test: install lint typecheck pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck:
	$(VENV)/mypy .

pytest:
	$(VENV)/pytest

bench: install
	$(VENV)/python bench/bench_token_auth.py
	$(VENV)/python bench/upload.py
	$(VENV)/python bench/serving.py
	$(VENV)/python bench/dataplane.py
	$(VENV)/python bench/monitoring.py

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache
