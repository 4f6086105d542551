# Every target bootstraps .venv by itself: only Python 3.11 is needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/default

.PHONY: run test lint docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU wheel first where there is no GPU, so no multi-GB CUDA build is pulled in.
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install --quiet torch; \
	else $(PY) -m pip install --quiet torch==2.13.0; fi
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: full-graph, VQ-GNN in one process and VQ-GNN on 2 Ray workers with the
## codebook server, on the built-in 100K-node synthetic graph, side by side.
DATASET ?= synthetic:num_nodes=100000
EPOCHS ?= 20
run: $(STAMP)
	$(VENV)/bin/vqgnn-dist compare --dataset $(DATASET) --model gcn --num-workers 2 \
		--epochs $(EPOCHS) --output-dir $(OUT)

## Install and run the whole offline test suite.
test: $(STAMP)
	$(VENV)/bin/ruff check vqgnn_dist tests jobs experiments
	$(PY) -m pytest -q tests

## Re-render the measured tables of README.md and docs/ from the JSON under results/.
docs: $(STAMP)
	$(PY) -m vqgnn_dist.bench.docs README.md docs/*.md

lint: $(STAMP)
	$(VENV)/bin/ruff check vqgnn_dist tests jobs experiments
	$(VENV)/bin/ruff format --check vqgnn_dist tests jobs experiments

clean:
	rm -rf $(VENV) runs
