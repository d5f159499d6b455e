# ModelDeck: `make run` starts the platform, `make test` runs lint, types and tests.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.8
# Never fetch a Python build: use the machine's 3.11.
export UV_PYTHON_DOWNLOADS := never
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv/bin

.PHONY: run test test-heavy install lint typecheck pytest bench clean docker-test protos

# uv is bootstrapped with pip when the machine does not have it.
.tools/bin/uv:
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

install: $(filter .tools/bin/uv,$(UV))
	$(UV) sync --frozen --extra convert --python $(PYTHON)

run: install
	$(VENV)/python manage.py runstack

test: install lint typecheck pytest

# lint-imports checks the layer contracts in .importlinter (docs/architecture.md).
lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/lint-imports

typecheck:
	$(VENV)/mypy .

# The torch models of the zoo (tests/zoo/torch_export.py) are exported in a venv of their own: torch is no dependency
# of the project. "+cpu" takes only a CPU wheel (pip finds one in this machine's wheel folder) and fails rather than
# fetch a multi-GB CUDA build.
TORCH_ZOO := torch==2.13.0+cpu onnxscript==0.7.2 onnx-ir==1.1.0 onnx==1.23.2 numpy==2.4.6 ml_dtypes==0.6.0 protobuf==7.36.2
# The stamp holds the pins it was made with: reinstall when they change.
ifneq ($(shell cat .venv-torch/.done 2>/dev/null),$(TORCH_ZOO))
.PHONY: .venv-torch/.done
endif

.venv-torch/.done:
	rm -rf .venv-torch
	$(PYTHON) -m venv .venv-torch
	.venv-torch/bin/pip install --quiet $(TORCH_ZOO)
	echo "$(TORCH_ZOO)" > $@

pytest: .venv-torch/.done
	$(VENV)/pytest -m "not heavy"

# The suites that start whole stacks, several processes or private servers to stop and restart (marked `heavy`):
# minutes of their own, so `make test` stays well under 20 minutes. `.ci/run` runs both.
test-heavy: install
	$(VENV)/pytest -m heavy

bench: install
	$(VENV)/python bench/bench_token_auth.py
	$(VENV)/python bench/upload.py
	$(VENV)/python bench/serving.py
	$(VENV)/python bench/dataplane.py
	$(VENV)/python bench/monitoring.py

# serving/grpc/generated/ from serving/grpc/protos/ (serving/grpc/generate.py says why it is rewritten after protoc).
protos: install
	$(VENV)/python -m serving.grpc.generate

# The image and the compose stack, end to end (docker/README.md); prints a "skipped" line where Docker is unavailable.
docker-test: install
	docker/smoke/smoke-test.sh

clean:
	rm -rf .venv .venv-torch .tools .mypy_cache .ruff_cache .pytest_cache
