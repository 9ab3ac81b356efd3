# Two commands on a fresh machine: `make exercise` runs the exercises offline, `make test` runs every check.
# `make exercise EXERCISE=orpo` runs one notebook (dpo or orpo).
PYTHON ?= python3
VENV ?= .venv
# CPU build of torch for a local run; on a GPU machine set TORCH_SPEC to the build you want (Colab keeps its own).
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
NOTEBOOKS := 2_preference_alignment/notebooks
export COURSE_PROFILE ?= offline
EXERCISE ?= dpo orpo

.PHONY: setup exercise figures bench real test lint

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/activate
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -r requirements.txt -r requirements-dev.txt -e .

exercise: setup
	$(BIN)/jupyter nbconvert --to notebook --execute --output-dir $(NOTEBOOKS)/runs \
		$(foreach name,$(EXERCISE),$(NOTEBOOKS)/$(name)_finetuning_example.ipynb)
	@echo "Executed notebook and metrics: $(NOTEBOOKS)/runs/"

# After `make exercise`: the lessons' figures, measured.json and measured tables, from the runs just made.
figures: setup
	$(BIN)/python tools/figures.py

# The cost of a training step, every method side by side in one run; rewrites benchmarks/results/ and the lesson table.
bench: setup
	$(BIN)/python benchmarks/bench.py

# Align SmolLM2-135M-Instruct on real HH-RLHF pairs on this CPU (about 15 min on 2 cores); runs/real/metrics.json.
real: setup
	COURSE_PROFILE=local $(BIN)/python 2_preference_alignment/scripts/real_run.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The real path first (SmolLM2-135M-Instruct on real harmless-base rows, capped to a few steps), then the offline
# notebooks and every test; the tests read the metrics both runs wrote.
test: lint
	COURSE_PROFILE=local COURSE_SMOKE=1 $(BIN)/python -m pytest $(NOTEBOOKS) --nbval-lax --nbval-current-env
	$(BIN)/python -m pytest $(NOTEBOOKS) tests --nbval-lax --nbval-current-env
