# Training-optimization benchmarks: one target per technique, all, plots, test.
# `make help` lists every target and variable with its default.

# the technique list is the scripts folder: scripts/<name>.py is `make <name>`; baseline runs first
ALL_TECHNIQUES := baseline $(filter-out baseline,$(sort $(basename $(notdir $(wildcard scripts/*.py)))))
TECHNIQUES ?= $(ALL_TECHNIQUES)

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
ACCUM ?= 4
COMPILE_MODE ?= default
SEED ?= 1337
LR ?= auto
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
NPROC ?= 2
PORT ?=
LOSS_CHECK ?= 1
KIND ?= ddp
NANOGPT_DIR ?=
SESSION_DIR ?=
export STEPS REPEATS WARMUP MODEL BATCH SEQ DEVICE DATA ACCUM COMPILE_MODE SEED LR RESULTS_FILE PEAK_TFLOPS
export PRECISION MAX_REPEATS TIME_BUDGET_MIN NPROC PORT LOSS_CHECK PLOTS_DIR PLOTSPREFIX

# does it still learn: depth, evaluation on held-out data, a target loss, the grid, the LR sweep
LAYERS ?= auto
EVAL_EVERY ?= auto
EVAL_BATCHES ?= 4
TARGET_LOSS ?=
GRID_MODELS ?= tiny lstm
GRID_LAYERS ?= 1 2 4
GRID_OPTIMIZERS ?= adam adamw sgd momentum
GRID_LRS ?=
GRID_REPORT ?= GRID.md
LRS ?=
export LAYERS EVAL_EVERY EVAL_BATCHES TARGET_LOSS

# memory (issue 8): plan, maxbatch, scaling
PLAN ?= 0
GPU_MEMORY_GB ?=
MAXMEM_GB ?=
SCALING_MODELS ?= tiny small gpt2 gpt2-medium gpt2-large gpt2-xl gpt-2.7b
SCALING_TECHNIQUES ?= baseline lion 8bit stack_memory
SCALING_TIMEOUT ?= 300
export PLAN GPU_MEMORY_GB MAXMEM_GB SCALING_MODELS SCALING_TIMEOUT PLOTS_DIR PLOTSPREFIX
# maxbatch: TECHNIQUE= given on the command line or in the environment, else every technique
MAXBATCH_TECHNIQUES = $(if $(filter command line environment,$(origin TECHNIQUE)),$(TECHNIQUE),$(TECHNIQUES))

# PYTHON unset: bootstrap .venv from requirements.txt once, reuse it after.
# PYTHON=python3: use that interpreter's packages as they are (e.g. a GPU box's torch).
VENV ?= .venv
ifeq ($(origin PYTHON),undefined)
PYTHON := $(VENV)/bin/python
SETUP := $(VENV)/.installed
endif

.PHONY: all $(ALL_TECHNIQUES) ddp fsdp scaling_gpus plots report compare profile session reset clean init_results test lint help
.PHONY: plan plan_check maxbatch scaling
.DEFAULT_GOAL := help

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

all: $(SETUP)
	@$(PYTHON) -m utils.run_all $(TECHNIQUES)

# one run: the script itself; REPEATS=N or PRECISION=p: the runs through run_all
$(ALL_TECHNIQUES): $(SETUP)
	@$(if $(filter-out 1,$(REPEATS))$(PRECISION),$(PYTHON) -m utils.run_all $@,$(PYTHON) scripts/$@.py)

# TECHNIQUE under torchrun: NPROC processes, DDP or FSDP2 (utils/launch.py)
ddp fsdp: $(SETUP)
	@$(PYTHON) -m utils.launch $@ "$(TECHNIQUE)"

scaling_gpus: $(SETUP)
	@$(PYTHON) -m utils.launch scaling "$(KIND)" "$(TECHNIQUE)"

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
		--device-filter "$(DEVICE_FILTER)" --budget-gb "$(BUDGET_GB)" --peak-tflops "$(PEAK_TFLOPS)" --target-loss "$(TARGET_LOSS)"

profile: $(SETUP)
	@$(PYTHON) -m utils.profile "$(TECHNIQUE)" --out "$(PLOTS_DIR)" --prefix "$(PLOTSPREFIX)"

.PHONY: grid grid_report lrsweep
GRID_ARGS = --models "$(GRID_MODELS)" --layers "$(GRID_LAYERS)" --optimizers "$(GRID_OPTIMIZERS)" --lrs "$(GRID_LRS)" \
	--results "$(RESULTS_FILE)" --out "$(GRID_REPORT)" --plots-dir "$(PLOTS_DIR)" --prefix "$(PLOTSPREFIX)" --target-loss "$(TARGET_LOSS)"

# seed 004's experiment: every model x depth x optimizer, each a fresh process, then its table
grid: $(SETUP)
	@$(PYTHON) -m utils.grid run $(GRID_ARGS)

# the grid's table, answer and figures from the runs already in RESULTS_FILE
grid_report: $(SETUP)
	@$(PYTHON) -m utils.grid report $(GRID_ARGS)

lrsweep: $(SETUP)
	@$(PYTHON) -m utils.lrsweep "$(TECHNIQUE)" --lrs "$(LRS)"

# the device's tests and the README's figures in one call (e.g. the day a GPU is lent)
session: $(SETUP)
	@PYTHON="$(PYTHON)" NANOGPT_DIR="$(NANOGPT_DIR)" SESSION_DIR="$(SESSION_DIR)" bash utils/session.sh

plan: $(SETUP)
	@$(PYTHON) -m utils.plan $(TECHNIQUES)

plan_check: $(SETUP)
	@$(PYTHON) -m utils.plan --check

maxbatch: $(SETUP)
	@$(PYTHON) -m utils.maxbatch $(MAXBATCH_TECHNIQUES)

scaling: $(SETUP)
	@$(PYTHON) -m utils.scaling $(SCALING_TECHNIQUES)

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

lint: $(SETUP)
	$(PYTHON) -m ruff check .

help:
	@echo "usage: make [target] [VARIABLE=value ...]"
	@echo
	@echo "targets:"
	@echo "  <technique>    train with one technique, append rows to RESULTS_FILE (from scripts/<technique>.py):"
	@for name in $(ALL_TECHNIQUES); do \
		printf '                 %-14s %s\n' "$$name" "$$(sed -n '1s/^"""[^:]*: *//p' scripts/$$name.py)"; \
	done
	@echo "  all            every technique in turn; goes on past failures, one summary line each"
	@echo "  ddp, fsdp      TECHNIQUE under torchrun on NPROC processes (DDP / FSDP2), then a loss check against one process"
	@echo "  scaling_gpus   TECHNIQUE under KIND at 1, 2, ... NPROC processes: tokens/s, efficiency, plot"
	@echo "  plots          line, box, bootstrap, heatmap and speedup plots into $(PLOTS_DIR)/ (named with PLOTSPREFIX)"
	@echo "  report         REPORT.md: per technique median, mean +- CI, tokens/s, MFU, memory, speedup +- CI; best bold"
	@echo "  compare        histogram of step time A - B (default A=sgd B=adam) with its CI"
	@echo "  grid           seed 004: GRID_MODELS x GRID_LAYERS x GRID_OPTIMIZERS, then GRID_REPORT (table, answer, figures)"
	@echo "  grid_report    GRID_REPORT from the grid runs already in RESULTS_FILE"
	@echo "  lrsweep        TECHNIQUE at each of LRS, fresh processes; says which LR had the best validation loss"
	@echo "  profile        torch.profiler top operators of TECHNIQUE (default baseline): txt, csv, png"
	@echo "  session        this device's tests, make all, nanoGPT's bench (NANOGPT_DIR), report and plots into docs/results/<device>/"
	@echo "  plan           predicted peak GPU memory and its breakdown per technique (fake tensors, any machine)"
	@echo "  plan_check     the planner against the H100 peaks of ../shared/README.md (the 10% bar)"
	@echo "  maxbatch       largest batch that trains per technique (TECHNIQUE= or all); PLAN=1 GPU_MEMORY_GB=40: planned"
	@echo "  scaling        SCALING_TECHNIQUES x SCALING_MODELS: tokens/s and peak memory vs parameters (plot)"
	@echo "  init_results   create RESULTS_FILE with its header (an existing one is only checked)"
	@echo "  reset          back up RESULTS_FILE to RESULTS_FILE.<utc time>.bak, then remove it and the plots"
	@echo "  clean          remove plots and caches (keeps results and .venv)"
	@echo "  test           run the test suite (CPU, a few minutes)"
	@echo "  lint           ruff over the code (ruff.toml: lines <= 120)"
	@echo "  help           this text"
	@echo
	@echo "variables (default):"
	@echo "  STEPS=50            measured steps per technique"
	@echo "  REPEATS=1           runs per technique, each a fresh process, interleaved A B C A B C"
	@echo "  PRECISION=          e.g. 0.02: add interleaved rounds until each speedup CI is within +-2%"
	@echo "  MAX_REPEATS=10      PRECISION: at most this many runs per technique"
	@echo "  TIME_BUDGET_MIN=30  PRECISION: start no round that would end past this many minutes"
	@echo "  WARMUP=auto         warm-up steps, timed apart: 10 on CUDA, 3 on CPU"
	@echo "  MODEL=auto          gpt2 on CUDA, tiny on CPU (plan: gpt2); or small, gpt2-medium, gpt2-large, gpt2-xl, gpt-2.7b; lstm, lstm-small, lstm-gpt2"
	@echo "  BATCH=auto          sequences per step (auto: the preset's: gpt2 16, tiny 4)"
	@echo "  SEQ=auto            tokens per sequence (auto: the preset's: gpt2 1024, tiny 128)"
	@echo "  DEVICE=auto         cuda if available, else cpu"
	@echo "  DATA=coinflip       coin flips with P(1)=2/3, fixed (one batch reused), markov, a text file (bytes) or a uint16 .bin"
	@echo "  ACCUM=4             micro-batches per optimizer step, for accum"
	@echo "  COMPILE_MODE=default  torch.compile mode for compile and stack: default, reduce-overhead, max-autotune, ..."
	@echo "  SEED=1337           seed for weights and data"
	@echo "  LR=auto             learning rate (auto: the optimizer's default, stated in its script; lion: AdamW's/3)"
	@echo "  PEAK_TFLOPS=table   dense peak TFLOP/s for MFU; table: by device and dtype (utils/mfu.py)"
	@echo "  RESULTS_FILE=results.csv"
	@echo "  PLOTSPREFIX=        prefix for plot file names, e.g. h100_"
	@echo "  PLOTS_DIR=plots"
	@echo "  DEVICE_FILTER=      plots / report: only devices whose name contains this (e.g. H100)"
	@echo "  REPORT=REPORT.md    where make report writes"
	@echo "  BUDGET_GB=          report: also recommend the fastest technique within this memory"
	@echo "  A=sgd B=adam        make compare: the two techniques"
	@echo "  TECHNIQUE=baseline  make profile / lrsweep / ddp / fsdp / scaling_gpus: the technique"
	@echo "  NPROC=2             make ddp / fsdp / scaling_gpus: processes (at most one per GPU, or per core)"
	@echo "  PORT=               make ddp / fsdp: rendezvous port (empty: torchrun --standalone picks one)"
	@echo "  LOSS_CHECK=1        make ddp / fsdp: compare the losses with one process at BATCH x NPROC (0: skip)"
	@echo "  KIND=ddp            make scaling_gpus: ddp or fsdp"
	@echo "  LAYERS=auto         layers of the model (auto: the preset's), e.g. 1, 2, 4"
	@echo "  EVAL_EVERY=auto     evaluate on held-out data every N training steps (auto: STEPS/5; 0: never)"
	@echo "  EVAL_BATCHES=4      held-out batches per evaluation"
	@echo "  TARGET_LOSS=        report / grid / runs: steps and seconds to reach this validation loss"
	@echo "  GRID_MODELS=tiny lstm  GRID_LAYERS=1 2 4  GRID_OPTIMIZERS=adam adamw sgd momentum  (make grid)"
	@echo "  GRID_LRS=           make grid: per-optimizer LRs, e.g. 'sgd=0.3 momentum=0.03' (else each script's default)"
	@echo "  GRID_REPORT=GRID.md where make grid writes its table"
	@echo "  LRS=                make lrsweep: the LRs (default: 1e-4 to 1 in half decades)"
	@echo "  TECHNIQUES=...      what all runs, in order (default: every script, baseline first)"
	@echo "  NANOGPT_DIR=        make session: a nanoGPT checkout whose bench.py runs beside the suite"
	@echo "  SESSION_DIR=        make session: where its figures go (default docs/results/<device>)"
	@echo "  PLAN=0              maxbatch: 1 = ask the planner instead of the device"
	@echo "  GPU_MEMORY_GB=      maxbatch PLAN=1: the GPU's memory in GiB (e.g. 40 for an A100 40GB)"
	@echo "  MAXMEM_GB=          maxbatch on a CPU: hard memory cap of each trial process, GiB"
	@echo "  SCALING_MODELS=...  scaling: model presets, smallest first measured, beyond the machine planned"
	@echo "  SCALING_TECHNIQUES=baseline lion 8bit stack_memory"
	@echo "  SCALING_TIMEOUT=300 scaling: seconds a measured run may take before the rest are planned"
	@echo "  PYTHON=             unset: make a .venv from requirements.txt; PYTHON=python3: use it as is"

# anything else: say so in one line instead of make's "No rule to make target"
Makefile requirements.txt: ;
%:
	@echo "make: unknown target or technique '$@' (techniques: $(ALL_TECHNIQUES); see make help)" >&2; exit 2
