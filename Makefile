# Everyday commands. `make quick` sets up, fetches data and runs the QUICK comparison;
# `make test` runs every test (CI runs it too). PY=python uses an existing (e.g. conda) env.
VENV ?= .venv
PY ?= $(VENV)/bin/python
NBVAL = --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
export HF_HUB_OFFLINE = 1
export PYTHONHASHSEED = 0

.PHONY: setup data quick test unit nbval notebooks lint lab bench

setup: $(VENV)/.installed

# torch first and pinned, so pip takes the CPU wheel instead of several GB of CUDA packages.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

data: setup
	$(PY) -m iam_tutorial.data

quick: data
	$(PY) -m iam_tutorial.compare --mode quick

test: setup lint unit nbval

unit:
	$(PY) -m pytest tests -q

nbval:
	$(PY) -m pytest $(NBVAL) notebooks -q

lint:
	$(PY) -m ruff check iam_tutorial tests benchmarks
	$(PY) -m ruff format --check iam_tutorial tests benchmarks

# Regenerate stored notebook outputs (the only way they change), in the environment nbval uses.
notebooks:
	cd notebooks && for nb in 0*.ipynb; do \
	  PYTHONHASHSEED=0 IAM_THREADS=2 OMP_NUM_THREADS=2 TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false \
	  ../$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.record_timing=False \
	    $$nb || exit 1; done

bench: setup
	$(PY) benchmarks/attention_speed.py

lab: setup
	$(PY) -m jupyter lab notebooks --allow-root
