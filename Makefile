# Training-optimization benchmarks: one target per technique, all, plots, test.
# `make help` lists every target and variable with its default.

TECHNIQUES ?= baseline tf32 bf16 compile flash fused 8bit lion checkpointing stack sgd momentum adam adamw

# run settings, read by every script (empty or auto: decided by the device / model preset)
STEPS ?= 50
REPEATS ?= 1
PRECISION ?=
MAX_REPEATS ?= 10
TIME_BUDGET_MIN ?= 30
WARMUP ?= auto
MODEL ?= auto
BATCH ?= auto
SEQ ?= auto
DEVICE ?= auto
DATA ?= coinflip
SEED ?= 1337
LR ?= 6e-4
RESULTS_FILE ?= results.csv
PLOTSPREFIX ?=
PLOTS_DIR ?= plots
DEVICE_FILTER ?=
REPORT ?= REPORT.md
BUDGET_GB ?=
A ?= sgd
B ?= adam
TECHNIQUE ?= baseline
PEAK_TFLOPS ?= table
export STEPS REPEATS WARMUP MODEL BATCH SEQ DEVICE DATA SEED LR RESULTS_FILE PEAK_TFLOPS
export PRECISION MAX_REPEATS TIME_BUDGET_MIN

# PYTHON unset: bootstrap .venv from requirements.txt once, reuse it after.
# PYTHON=python3: use that interpreter's packages as they are (e.g. a GPU box's torch).
VENV ?= .venv
ifeq ($(origin PYTHON),undefined)
PYTHON := $(VENV)/bin/python
SETUP := $(VENV)/.installed
endif

.PHONY: all $(TECHNIQUES) plots report compare profile reset clean init_results test help
.DEFAULT_GOAL := help

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

all: $(SETUP)
	@$(PYTHON) -m utils.run_all $(TECHNIQUES)

# one run: the script itself; REPEATS=N or PRECISION=p: the runs through run_all
$(TECHNIQUES): $(SETUP)
	@$(if $(filter-out 1,$(REPEATS))$(PRECISION),$(PYTHON) -m utils.run_all $@,$(PYTHON) scripts/$@.py)

# an empty PLOTS_DIR would make these /*.png: stop before any recipe line runs
PLOTS_DIR_CHECKED = $(or $(PLOTS_DIR),$(error PLOTS_DIR is empty: give a folder))
PLOT_FILES = $(foreach f,*.png *profile_*.txt *profile_*.csv,"$(PLOTS_DIR_CHECKED)"/$(f))
PLOTS_ARGS = --results "$(RESULTS_FILE)" --out "$(PLOTS_DIR)" --prefix "$(PLOTSPREFIX)" --device-filter "$(DEVICE_FILTER)"

plots: $(SETUP)
	@$(PYTHON) -m utils.plots $(PLOTS_ARGS)

compare: $(SETUP)
	@$(PYTHON) -m utils.plots $(PLOTS_ARGS) --compare "$(A)" "$(B)"

report: $(SETUP)
	@$(PYTHON) -m utils.report --results "$(RESULTS_FILE)" --out "$(REPORT)" --plots-dir "$(PLOTS_DIR)" --prefix "$(PLOTSPREFIX)" \
		--device-filter "$(DEVICE_FILTER)" --budget-gb "$(BUDGET_GB)" --peak-tflops "$(PEAK_TFLOPS)"

profile: $(SETUP)
	@$(PYTHON) -m utils.profile "$(TECHNIQUE)" --out "$(PLOTS_DIR)" --prefix "$(PLOTSPREFIX)"

init_results: $(SETUP)
	@$(PYTHON) -m utils.results init "$(RESULTS_FILE)"

# keep a timestamped copy of the results (refused for a file not of this suite) before removing
# them and the plots; utils.results needs no packages, so without PYTHON any python3 does
reset:
	@$(if $(SETUP),python3,$(PYTHON)) -m utils.results reset "$(RESULTS_FILE)"
	@rm -f $(PLOT_FILES) && echo "reset: removed the plots and profiles in $(PLOTS_DIR)/"

# generated files only: results.csv (your data) and .venv are kept
clean:
	rm -rf $(PLOT_FILES) .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

test: $(SETUP)
	$(PYTHON) -m pytest -q tests

help:
	@echo "usage: make [target] [VARIABLE=value ...]"
	@echo
	@echo "targets:"
	@echo "  <technique>    train with one technique, append rows to RESULTS_FILE:"
	@echo "                 $(TECHNIQUES)"
	@echo "  all            every technique in turn; goes on past failures, one summary line each"
	@echo "  plots          line, box, bootstrap, heatmap and speedup plots into $(PLOTS_DIR)/ (named with PLOTSPREFIX)"
	@echo "  report         REPORT.md: per technique median, mean +- CI, tokens/s, MFU, memory, speedup +- CI; best bold"
	@echo "  compare        histogram of step time A - B (default A=sgd B=adam) with its CI"
	@echo "  profile        torch.profiler top operators of TECHNIQUE (default baseline): txt, csv, png"
	@echo "  init_results   create RESULTS_FILE with its header (an existing one is only checked)"
	@echo "  reset          back up RESULTS_FILE to RESULTS_FILE.<utc time>.bak, then remove it and the plots"
	@echo "  clean          remove plots and caches (keeps results and .venv)"
	@echo "  test           run the test suite (CPU, a few minutes)"
	@echo "  help           this text"
	@echo
	@echo "variables (default):"
	@echo "  STEPS=50            measured steps per technique"
	@echo "  REPEATS=1           runs per technique, each a fresh process, interleaved A B C A B C"
	@echo "  PRECISION=          e.g. 0.02: add interleaved rounds until each speedup CI is within +-2%"
	@echo "  MAX_REPEATS=10      PRECISION: at most this many runs per technique"
	@echo "  TIME_BUDGET_MIN=30  PRECISION: start no round that would end past this many minutes"
	@echo "  WARMUP=auto         warm-up steps, timed apart: 10 on CUDA, 3 on CPU"
	@echo "  MODEL=auto          gpt2 on CUDA, tiny on CPU; or small, gpt2-medium, gpt2-large, gpt2-xl"
	@echo "  BATCH=auto          sequences per step (auto: the preset's: gpt2 16, tiny 4)"
	@echo "  SEQ=auto            tokens per sequence (auto: the preset's: gpt2 1024, tiny 128)"
	@echo "  DEVICE=auto         cuda if available, else cpu"
	@echo "  DATA=coinflip       coin flips with P(1)=2/3, or a path to a text file (bytes)"
	@echo "  SEED=1337           seed for weights and data"
	@echo "  LR=6e-4             AdamW learning rate (lion uses LR/3)"
	@echo "  PEAK_TFLOPS=table   dense peak TFLOP/s for MFU; table: by device and dtype (utils/mfu.py)"
	@echo "  RESULTS_FILE=results.csv"
	@echo "  PLOTSPREFIX=        prefix for plot file names, e.g. h100_"
	@echo "  PLOTS_DIR=plots"
	@echo "  DEVICE_FILTER=      plots / report: only devices whose name contains this (e.g. H100)"
	@echo "  REPORT=REPORT.md    where make report writes"
	@echo "  BUDGET_GB=          report: also recommend the fastest technique within this memory"
	@echo "  A=sgd B=adam        make compare: the two techniques"
	@echo "  TECHNIQUE=baseline  make profile: the technique"
	@echo "  TECHNIQUES=...      what all runs, in order"
	@echo "  PYTHON=             unset: make a .venv from requirements.txt; PYTHON=python3: use it as is"

# anything else: say so in one line instead of make's "No rule to make target"
Makefile requirements.txt: ;
%:
	@echo "make: unknown target or technique '$@' (techniques: $(TECHNIQUES); see make help)" >&2; exit 2
