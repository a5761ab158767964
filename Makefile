# Training-optimization benchmarks: one target per technique, all, plots, test.
# `make help` lists every target and variable with its default.

TECHNIQUES ?= baseline tf32 bf16 compile flash fused 8bit lion checkpointing stack

# run settings, read by every script (empty or auto: decided by the device / model preset)
STEPS ?= 50
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
export STEPS WARMUP MODEL BATCH SEQ DEVICE DATA SEED LR RESULTS_FILE

# PYTHON unset: bootstrap .venv from requirements.txt once, reuse it after.
# PYTHON=python3: use that interpreter's packages as they are (e.g. a GPU box's torch).
VENV ?= .venv
ifeq ($(origin PYTHON),undefined)
PYTHON := $(VENV)/bin/python
SETUP := $(VENV)/.installed
endif

.PHONY: all $(TECHNIQUES) plots reset clean init_results test help
.DEFAULT_GOAL := help

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

all: $(SETUP)
	@$(PYTHON) -m utils.run_all $(TECHNIQUES)

$(TECHNIQUES): $(SETUP)
	@$(PYTHON) scripts/$@.py

plots: $(SETUP)
	@$(PYTHON) -m utils.plots --results "$(RESULTS_FILE)" --out "$(PLOTS_DIR)" --prefix "$(PLOTSPREFIX)"

init_results: $(SETUP)
	@$(PYTHON) -m utils.results init "$(RESULTS_FILE)"

# keep a timestamped copy of the results before removing them and the plots
reset:
	@if [ -f "$(RESULTS_FILE)" ]; then \
		backup="$(RESULTS_FILE).$$(date -u +%Y%m%dT%H%M%SZ).bak"; \
		mv "$(RESULTS_FILE)" "$$backup" && echo "reset: $(RESULTS_FILE) moved to $$backup"; \
	fi
	@rm -f $(PLOTS_DIR)/*.png && echo "reset: removed $(PLOTS_DIR)/*.png"

# generated files only: results.csv (your data) and .venv are kept
clean:
	rm -rf $(PLOTS_DIR)/*.png .pytest_cache
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
	@echo "  plots          line plot, heatmap and speedup bars into $(PLOTS_DIR)/ (named with PLOTSPREFIX)"
	@echo "  init_results   create RESULTS_FILE with its header (an existing one is only checked)"
	@echo "  reset          back up RESULTS_FILE to RESULTS_FILE.<utc time>.bak, then remove it and the plots"
	@echo "  clean          remove plots and caches (keeps results and .venv)"
	@echo "  test           run the test suite (CPU, a few minutes)"
	@echo "  help           this text"
	@echo
	@echo "variables (default):"
	@echo "  STEPS=50            measured steps per technique"
	@echo "  WARMUP=auto         warm-up steps, timed apart: 10 on CUDA, 3 on CPU"
	@echo "  MODEL=auto          gpt2 on CUDA, tiny on CPU; or small, gpt2-medium, gpt2-large, gpt2-xl"
	@echo "  BATCH=auto          sequences per step (auto: the preset's: gpt2 16, tiny 4)"
	@echo "  SEQ=auto            tokens per sequence (auto: the preset's: gpt2 1024, tiny 128)"
	@echo "  DEVICE=auto         cuda if available, else cpu"
	@echo "  DATA=coinflip       coin flips with P(1)=2/3, or a path to a text file (bytes)"
	@echo "  SEED=1337           seed for weights and data"
	@echo "  LR=6e-4             AdamW learning rate (lion uses LR/3)"
	@echo "  RESULTS_FILE=results.csv"
	@echo "  PLOTSPREFIX=        prefix for plot file names, e.g. h100_"
	@echo "  PLOTS_DIR=plots"
	@echo "  TECHNIQUES=...      what all runs, in order"
	@echo "  PYTHON=             unset: make a .venv from requirements.txt; PYTHON=python3: use it as is"

# anything else: say so in one line instead of make's "No rule to make target"
Makefile requirements.txt: ;
%:
	@echo "make: unknown target or technique '$@' (techniques: $(TECHNIQUES); see make help)" >&2; exit 2
