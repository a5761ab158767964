"""Every setting once: its name (the Make variable, the environment variable), default, check
and help. The scripts' flags, every driver's reading of its settings, `make help` and
docs/reference.md are made from this table; nothing else states a default.

Settings travel one way: `make X NAME=value` exports NAME to the command it runs (Make does
so for every variable given on its command line), and each command reads it here, from the
environment or, for a script run by hand, from its flag (`--name`). Stdlib only: make help,
make reset and the report read it without torch.
"""

import argparse
import os
from dataclasses import dataclass

from utils import checks, devices

SEED_MAX = 2**64 - 1  # torch.manual_seed's range
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's
ALLOCATOR_MODES = ("native", "expandable_segments")  # the CUDA caching allocator's (PYTORCH_CUDA_ALLOC_CONF)
MODULE_LOADINGS = ("lazy", "eager")  # CUDA_MODULE_LOADING: what the CUDA context holds
GRAPHED_COMPILE_MODES = ("reduce-overhead", "max-autotune")  # inductor captures CUDA graphs in these modes
MODEL_AUTO = "auto (gpt2 on CUDA, tiny on CPU; make plan: gpt2)"
MODEL_HELP = (f"the model: a preset, hf:<name> (a Hugging Face causal LM from its config, random weights: shipped "
              f"names, a config.json, or a hub id where the hub is reachable) or path/to/file.py:function "
              f"(build(seq) -> nn.Module); {MODEL_AUTO}; see docs/models.md")


def _auto(check):
    """`check`, or None for auto."""
    return lambda name, text: None if text == "auto" else check(name, text)


def _int(minimum, maximum=None):
    return lambda name, text: checks.integer(name, text, minimum, maximum)


def _number(name, text):
    return checks.number(name, text)


def _optional(check):
    return lambda name, text: checks.optional(check, name, text)


def _choice(*allowed):
    def check(name, text):
        if text not in allowed:
            raise checks.BadInput(f"{name} must be one of {', '.join(allowed)}, got {text!r}")
        return text

    return check


def _words(name, text):
    return text.split()


def _flag(name, text):
    return checks.integer(name, text, 0, 1) == 1


def _fraction(name, text):
    return checks.optional(checks.number, name, text, 1)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    group: str
    check: object = None  # (name, text) -> value, raising checks.BadInput; None: the text as given
    flag: bool = False  # also a flag of every technique script (--steps, ...)
    path: bool = False  # a file or folder: given blank it is refused ("is empty"), never a default

    def parse(self, text):
        return self.check(self.name, text) if self.check else text


S = Setting
SETTINGS = (
    # one run (every technique script's flags)
    S("STEPS", "50", "measured training steps per run", "run", _int(1), True),
    S("WARMUP", "auto", "warm-up steps, timed and kept apart (auto: 10 on CUDA, 3 on CPU)", "run", _auto(_int(0)),
      True),
    S("MODEL", "auto", MODEL_HELP, "run", None, True),
    S("LAYERS", "auto", "layers (blocks) of the model: a preset's or an hf: config's (num_hidden_layers; auto: its "
      "own)", "run", _auto(_int(1)), True),
    S("BLOCKS", "auto", "a foreign model's blocks, the nn.ModuleList checkpointing wraps and FSDP2 shards, e.g. "
      "transformer.h (auto: transformer.h, model.layers, ... or its largest ModuleList)", "run",
      _auto(lambda name, text: text), True),
    S("BATCH", "auto", "sequences per step (auto: the preset's, e.g. gpt2 16, tiny 4)", "run", _auto(_int(1)), True),
    S("SEQ", "auto", "tokens per sequence (auto: the preset's, e.g. gpt2 1024, tiny 128)", "run", _auto(_int(1)), True),
    S("DEVICE", "auto", "auto (cuda if torch sees a GPU, else cpu), cpu or cuda", "run", _choice("auto", "cpu", "cuda"),
      True),
    S("DATA", "coinflip", "coinflip (P(1)=2/3 flips), fixed (one batch reused), markov (8-symbol chain, known "
      "entropy rate), a text file (bytes) or a uint16 .bin token file", "run", None, True),
    S("SEED", "1337", "seed for weights and data", "run", _int(0, SEED_MAX), True),
    S("LR", "auto", "learning rate (auto: the optimizer's default from its literature, stated in its script)", "run",
      _auto(_number), True),
    S("ACCUM", "4", "micro-batches of BATCH per optimizer step, for techniques that accumulate", "run", _int(1), True),
    S("COMPILE_MODE", "default", "torch.compile mode of techniques that compile",
      "run", _choice(*COMPILE_MODES), True),
    S("EVAL_EVERY", "auto", "evaluate on held-out data every N training steps (auto: STEPS/5; 0: never)", "run",
      _auto(_int(0)), True),
    S("EVAL_BATCHES", "4", "held-out batches per evaluation", "run", _int(1), True),
    S("TARGET_LOSS", "", "validation loss to reach: runs, report and grid say when it was (blank: none)", "run",
      _optional(_number), True),
    S("RESULTS_FILE", "results.csv", "the CSV rows are appended to (and read from)", "run", None, True, True),
    S("PEAK_TFLOPS", "table", "dense peak TFLOP/s for MFU (table: by device and dtype, utils/devices.py)", "run",
      lambda name, text: None if text == "table" else checks.number(name, text), True),
    S("REPEAT", "0", "repeat index written to a run's rows (make all sets it for each run)", "run", _int(0), True),
    S("REFERENCE_RANKS", "1", "train one process on N ranks' data, their N micro-batches accumulated per step (make "
      "ddp / fsdp's loss check sets it)", "run", _int(1), True),
    # make all
    S("TECHNIQUES", "", "what make all, plan and maxbatch run, in order (blank: every script, baseline first)",
      "all", _words),
    S("REPEATS", "1", "runs per technique, each a fresh process, interleaved A B C A B C", "all", _int(1)),
    S("PRECISION", "", "e.g. 0.02: add interleaved rounds until each technique's CI is within +-2%", "all",
      _fraction),
    S("MAX_REPEATS", "10", "with PRECISION: at most this many runs per technique (3 at least)", "all", _int(3)),
    S("TIME_BUDGET_MIN", "30", "with PRECISION: start no round that would end past this many minutes", "all", _number),
    # report, plots, compare
    S("REPORT", "REPORT.md", "where make report writes", "report", path=True),
    S("PLOTS_DIR", "plots", "where plots and profiles go", "report", path=True),
    S("PLOTSPREFIX", "", "prefix of plot file names, e.g. h100_", "report"),
    S("DEVICE_FILTER", "", "report / plots: only devices whose name contains this, e.g. H100", "report"),
    S("BUDGET_GB", "", "report: also name the fastest technique whose peak memory fits in this many GiB", "report",
      _optional(_number)),
    S("A", "sgd", "make compare: the first technique", "report"),
    S("B", "adam", "make compare: the second technique", "report"),
    # one technique elsewhere: profile, lrsweep, torchrun
    S("TECHNIQUE", "baseline", "the technique of make profile, lrsweep, ddp, fsdp, scaling_gpus (and maxbatch when "
      "given)", "technique"),
    S("T", "", "make run: the technique or '+' combination to run, e.g. bf16+checkpointing+lion (blank: TECHNIQUE)",
      "technique"),
    S("LRS", "", "make lrsweep: the LRs (blank: 1e-4 to 1 in half decades)", "technique", _words),
    S("NPROC", "2", "make ddp / fsdp / scaling_gpus: processes, at most one per GPU (or CPU core); make plan "
      "PARALLEL=...: the GPUs planned", "technique", _int(1)),
    S("PORT", "", "make ddp / fsdp: rendezvous port (blank: torchrun --standalone picks one)", "technique",
      _optional(lambda name, text: checks.integer(name, text, 1, 65535))),
    S("LOSS_CHECK", "1", "make ddp / fsdp: compare the losses with one process on the same global batch, NPROC "
      "micro-batches of BATCH accumulated (0: skip)", "technique", _flag),
    S("KIND", "ddp", "make scaling_gpus: ddp or fsdp", "technique", _choice("ddp", "fsdp")),
    # the LSTM-vs-GPT grid
    S("GRID_MODELS", "tiny lstm", "make grid: the model presets", "grid", _words),
    S("GRID_LAYERS", "1 2 4", "make grid: the depths", "grid", _words),
    S("GRID_OPTIMIZERS", "adam adamw sgd momentum", "make grid: the optimizer techniques", "grid", _words),
    S("GRID_LRS", "", "make grid: per-optimizer LRs, e.g. 'sgd=0.3 momentum=0.03' (else each script's default)",
      "grid"),
    S("GRID_REPORT", "GRID.md", "where make grid writes its table, answer and figure links", "grid", path=True),
    # the matrix: a full factorial of techniques
    S("BASE", "", "make matrix: the technique or '+' combination every cell starts from, e.g. bf16 (blank: the "
      "baseline)", "matrix"),
    S("FACTORS", "", "make matrix: techniques each on or off, e.g. 'checkpointing flash' (2^n cells per optimizer)",
      "matrix", _words),
    S("OPTIMIZERS", "adamw", "make matrix: the optimizers, e.g. 'adamw lion 8bit' (adamw: the baseline's)", "matrix",
      _words),
    S("MAXBATCH", "0", "make matrix: 1 also finds each cell's largest batch (measured, or with PLAN=1 planned)",
      "matrix", _flag),
    S("MATRIX_MAX_CELLS", "64", "make matrix: refuse a design of more cells than this (raise it on purpose)", "matrix",
      _int(1)),
    S("MATRIX_REPORT", "MATRIX.md", "where make matrix writes its table, main effects and interactions", "matrix",
      path=True),
    # memory: plan, maxbatch, scaling
    S("PLAN", "0", "make maxbatch / matrix: 1 asks the planner about the GPU named by GPU=, not this device",
      "memory", _flag),
    S("GPU", "h100-sxm", "make plan / maxbatch PLAN=1 / matrix PLAN=1: the GPU planned for (a key of "
      "utils/devices.py's table: " + ", ".join(g.key for g in devices.GPUS) + ")", "memory",
      _choice(*(g.key for g in devices.GPUS))),
    S("GPU_MEMORY_GB", "", "planned GPU's memory in GiB instead of the table's (a card of another size)", "memory",
      _optional(_number)),
    S("PARALLEL", "", "make plan / maxbatch PLAN=1 / matrix PLAN=1: ddp or fsdp plans rank 0 of NPROC GPUs "
      "(blank: one GPU); make ddp / fsdp set it for their processes", "memory"),
    S("ALLOCATOR", "native", "planned CUDA caching allocator: native, or expandable_segments "
      "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)", "memory", _choice(*ALLOCATOR_MODES)),
    S("MODULE_LOADING", "lazy", "planned CUDA module loading: lazy (torch >= 1.13 with CUDA >= 11.7), or eager "
      "(older, or CUDA_MODULE_LOADING=EAGER): sets the CUDA context's size", "memory", _choice(*MODULE_LOADINGS)),
    S("MAXMEM_GB", "", "make maxbatch on a CPU: hard memory cap of each trial process, GiB", "memory",
      _optional(_number)),
    S("SCALING_MODELS", "tiny small gpt2 gpt2-medium gpt2-large gpt2-xl gpt-2.7b",
      "make scaling: model presets; measured while the machine can, planned beyond", "memory", _words),
    S("SCALING_TECHNIQUES", "baseline lion 8bit stack_memory", "make scaling: the techniques", "memory", _words),
    S("SCALING_TIMEOUT", "300", "make scaling: seconds a measured run may take before the rest are planned", "memory",
      _number),
    # make session
    S("NANOGPT_DIR", "", "make session: a nanoGPT checkout whose bench.py runs beside the suite", "session"),
    S("SESSION_DIR", "", "make session: where its figures go (blank: docs/results/<device>)", "session"),
    S("PYTHON", "(unset)", "unset: make a .venv from requirements.txt; PYTHON=python3: use that interpreter as it is",
      "session"),
)
BY_NAME = {s.name: s for s in SETTINGS}
FLAGS = tuple(s for s in SETTINGS if s.flag)
GROUPS = {
    "run": "one run (every technique script's flags: --steps, --model, ...)",
    "all": "make all: which techniques, how many runs",
    "report": "make report, plots, compare",
    "technique": "one technique elsewhere: profile, lrsweep, ddp, fsdp, scaling_gpus",
    "grid": "the LSTM-vs-GPT grid (make grid)",
    "matrix": "make matrix: a full factorial of techniques",
    "memory": "memory: plan, maxbatch, scaling",
    "session": "make session and the environment",
}


def text(name, env=None):
    """The setting as given (environment, else its default); blank means the default, but for
    a path, which is then refused as empty where it is checked."""
    env = os.environ if env is None else env
    if BY_NAME[name].path and name in env:
        return env[name]
    return env.get(name) or BY_NAME[name].default


def get(name, env=None):
    """The setting, checked and parsed (raises checks.BadInput with one line)."""
    return BY_NAME[name].parse(text(name, env))


def given(name, env=None):
    """Whether the user set it (on make's command line or in the environment)."""
    return bool((os.environ if env is None else env).get(name))


def script_parser(prog, description):
    """The flags of a technique script: one per run setting, defaulting to the environment."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    for s in FLAGS:
        parser.add_argument(f"--{s.name.lower().replace('_', '-')}", dest=s.name, default=text(s.name),
                            help=f"{s.help} [{s.name}, default {s.default or 'blank'}]")
    return parser
