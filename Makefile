# Everyday commands. `make quick` sets up, fetches data and runs the main job (the QUICK comparison);
# `make test` runs every test (CI runs it too). PY=python uses an existing (e.g. conda) env.
VENV ?= .venv
PY ?= $(VENV)/bin/python
# Where pip takes torch from. Empty: the default index (PyPI; on Linux that is the CUDA build,
# several GB). `make quick TORCH_INDEX=https://download.pytorch.org/whl/cpu`: the ~200 MB CPU build.
TORCH_INDEX ?=
PARALLEL ?= 2
NBVAL = --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
export HF_HUB_OFFLINE = 1
export PYTHONHASHSEED = 0
export TOKENIZERS_PARALLELISM = false

.PHONY: setup data quick reference llm every-user test unit nbval notebooks lint lab bench

setup: $(VENV)/.installed

# torch first and pinned, so the rest of the install never pulls another build of it.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m iam_tutorial.backbones fetch
	touch $@

data: setup
	$(PY) -m iam_tutorial.data

# The main job: seed 0 of a few reference cells, trained here, printed beside the committed reference.
quick: data
	$(PY) -m iam_tutorial.lab.compare --mode quick --parallel $(PARALLEL)

# The reference comparison (5 seeds, every compared plan, both item inputs): 27-55 min on 2 cores
# (27 min measured on an AMD EPYC, 55 min on an earlier machine).
reference: data
	$(PY) -m iam_tutorial.lab.compare --mode reference --parallel $(PARALLEL)

# The comparison on the fine-tuned LLM (SmolLM2-135M, users 1..300, seeds 0-2, budgets 1, 2, 4
# epochs): about 2 h on 2 cores; resumable (re-run it), every finished budget of a run is stored.
llm: data
	$(PY) -m iam_tutorial.lab.compare --mode llm --parallel $(PARALLEL)

# Every user tested (results/every-user/PLAN.md): token, hatllm, iam-heads on SmolLM2 and a
# data-matched SASRec, trained on users 1..1,000, tested on all 6,040 users; resumable (re-run it:
# finished cells are reused while their fingerprints match), one cell at a time with 2 threads.
every-user: data
	$(PY) -m iam_tutorial.lab.compare --mode every-user --parallel 1

test: setup lint unit nbval

unit:
	$(PY) -m pytest tests -q

nbval:
	$(PY) -m pytest $(NBVAL) notebooks -q

lint:
	$(PY) -m ruff check iam_tutorial tests benchmarks
	$(PY) -m ruff format --check iam_tutorial tests benchmarks

# Regenerate stored notebook outputs and the README's figures (the only way either changes).
notebooks:
	cd notebooks && for nb in 0*.ipynb; do \
	  IAM_THREADS=2 OMP_NUM_THREADS=2 TQDM_DISABLE=1 IAM_FIGURES_DIR=$(CURDIR)/figures \
	  ../$(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.record_timing=False \
	    $$nb || exit 1; done

bench: setup
	$(PY) benchmarks/attention_speed.py

lab: setup
	$(PY) -m jupyter lab notebooks --allow-root
