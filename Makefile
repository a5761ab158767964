# Training-optimization benchmarks: one target per technique, all, report, plots, plan, test.
# `make help` lists every target, technique and variable with its default (utils/reference.py).
#
# Settings pass one way: VARIABLE=value on make's command line reaches the command as SUITE_VARIABLE,
# and utils/settings.py reads and checks it there (a shell's own T or DEVICE never does; set
# SUITE_STEPS=... in the environment on purpose). Nothing here states a default; the targets are
# thin aliases for python -m commands.

# every variable given on make's command line, namespaced for the Python side (a typo is refused there)
$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $v)),$(eval export SUITE_$v = $$($v))))

# the technique list is the scripts folder: scripts/<name>.py is `make <name>`
TECHNIQUE_TARGETS := $(sort $(basename $(notdir $(wildcard scripts/*.py))))

# PYTHON unset: bootstrap .venv from requirements.txt once, reuse it after.
# PYTHON=python3 (or `export PYTHON=python3` once): use that interpreter's packages as they are (e.g. a GPU
# box's torch), each target first checking that it has what the target needs (utils/requirements.py).
VENV := .venv
ifeq ($(origin PYTHON),undefined)
PYTHON := $(VENV)/bin/python
SETUP := $(VENV)/.installed $(VENV)/.on-path
STDLIB_PYTHON := python3
else
SETUP := python_check
STDLIB_PYTHON := $(PYTHON)
endif
# the goals asked, for python_check: what make test needs that make all does not
export MAKECMDGOALS
# the scripts import utils from this folder, whichever interpreter runs them
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: all run $(TECHNIQUE_TARGETS) ddp fsdp scaling_gpus plots report compare profile grid grid_report lrsweep session
.PHONY: matrix plan plan_check codegen_check tune maxbatch scaling gpu_check finetune_check init_results reset clean test test-e2e lint help python_check
.DEFAULT_GOAL := help

# one line naming what PYTHON lacks for the goals asked (exit 2), before anything runs
python_check:
	@$(PYTHON) -m utils.requirements

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# this folder on the venv's path, as an editable install would put it: .venv/bin/python scripts/<t>.py works
$(VENV)/.on-path: $(VENV)/.installed
	$(VENV)/bin/python -c "import pathlib, site; pathlib.Path(site.getsitepackages()[0], 'suite.pth').write_text('$(CURDIR)\n')"
	touch $@

all: $(SETUP)
	@$(PYTHON) -m utils.drivers.all

$(TECHNIQUE_TARGETS): $(SETUP)
	@$(PYTHON) -m utils.drivers.one $@

# a technique or a combination named in T (or TECHNIQUE): make run T=bf16+checkpointing+lion
run: $(SETUP)
	@$(PYTHON) -m utils.drivers.one

ddp fsdp: $(SETUP)
	@$(PYTHON) -m utils.drivers.launch $@

scaling_gpus: $(SETUP)
	@$(PYTHON) -m utils.drivers.launch scaling

report: $(SETUP)
	@$(PYTHON) -m utils.report

plots: $(SETUP)
	@$(PYTHON) -m utils.plots

compare: $(SETUP)
	@$(PYTHON) -m utils.plots --compare

profile: $(SETUP)
	@$(PYTHON) -m utils.drivers.profile

grid: $(SETUP)
	@$(PYTHON) -m utils.drivers.grid run

grid_report: $(SETUP)
	@$(PYTHON) -m utils.drivers.grid report

lrsweep: $(SETUP)
	@$(PYTHON) -m utils.drivers.lrsweep

session: $(SETUP)
	@PYTHON="$(PYTHON)" bash utils/drivers/session.sh

matrix: $(SETUP)
	@$(PYTHON) -m utils.drivers.matrix

plan: $(SETUP)
	@$(PYTHON) -m utils.plan

plan_check: $(SETUP)
	@$(PYTHON) -m utils.plan --check

# each compiled graph's memory as planned against the wrapper inductor generates for it (needs Triton)
codegen_check: $(SETUP)
	@$(PYTHON) -m utils.plan --codegen

# the fastest setup that fits, predicted for GPU= (or GPUS=), or with VERIFY=k measured here
tune: $(SETUP)
	@$(PYTHON) -m utils.tune

maxbatch: $(SETUP)
	@$(PYTHON) -m utils.drivers.maxbatch

scaling: $(SETUP)
	@$(PYTHON) -m utils.drivers.scaling

# a first GPU run: the suite's GPU path checked in under 10 minutes (no GPU: one line, exit 2)
gpu_check: $(SETUP)
	@$(PYTHON) -m utils.drivers.gpu_check

# the fine-tuning techniques on this GPU (Llama 3.2 1B), each beside its plan (no GPU: one line, exit 2)
finetune_check: $(SETUP)
	@$(PYTHON) -m utils.drivers.gpu_check.finetune

# standard library only: without PYTHON any python3 does, no venv needed
init_results reset clean:
	@$(STDLIB_PYTHON) -m utils.drivers.files $@

# two workers where pytest-xdist is installed (the tests are mostly Python-bound dispatch, or commands that wait
# on one, one core each; tests/conftest.py splits torch's threads between them), else one process; $(1): how
# the tests are dealt to the workers
xdist = $$($(PYTHON) -c 'import xdist' 2>/dev/null && echo --numprocesses=2 $(1))

test: $(SETUP)
	$(PYTHON) -m pytest -q $(call xdist) tests/unit

# a module to one worker whole (loadscope: its module-scoped fixtures, test_suite.py's make all, run once), in the
# order tests/e2e/conftest.py collects them (xdist would deal the modules of most tests first)
test-e2e: $(SETUP)
	$(PYTHON) -m pytest -q --durations=10 $(call xdist,--dist=loadscope --no-loadscope-reorder) tests/e2e

lint: $(SETUP)
	$(PYTHON) -m ruff check .

help:
	@python3 -m utils.reference help

# anything else is a combination (make flash+lion) or refused in one line, not make's "No rule to make target"
Makefile requirements.txt: ;
%: $(SETUP)
	@$(PYTHON) -m utils.drivers.one $@
