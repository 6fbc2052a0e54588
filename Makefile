# Two entry points: `make demo` runs the main job on the embedded storyworld corpus, `make test` runs the tests.
# Both build .venv first: torch==2.13.0 (the CPU build) before anything else, so pip never pulls a CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
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
