# Two entry points: `make demo` runs the main job on the embedded storyworld corpus, `make test` runs the tests.
# Both build .venv first, with torch==2.13.0 before anything else. Which build that is depends on where pip looks:
# a CPU wheel where one is provided (a local wheel dir or index), a CUDA build from PyPI. TORCH_INDEX chooses:
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cpu     (the CPU build)
PYTHON ?= python3
TORCH_INDEX ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[dev,interop]'
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/babelscope run recipes/demo.toml --out $(DEMO_OUT)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	HF_HUB_OFFLINE=1 $(PY) benchmarks/train_throughput.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/sae_train.py --quick
	HF_HUB_OFFLINE=1 $(PY) benchmarks/sae_train.py --quick --arch relu
	HF_HUB_OFFLINE=1 $(PY) benchmarks/analysis.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/sweep.py --sae-tokens 10000 --store-tokens 3000 --stories 300
	HF_HUB_OFFLINE=1 $(PY) benchmarks/dashboard.py
	HF_HUB_OFFLINE=1 $(PY) benchmarks/translate.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
