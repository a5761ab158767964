"""Every setting once: its name, default, check, type and help. The scripts' flags, `make help`, docs/reference.md and
the one typed `Settings` object each command reads are made from this table; nothing else states a default.

Settings travel one way: `make X NAME=value` exports SUITE_NAME to the command it runs (the Makefile does so for
every variable given on its command line), and the command's entry point parses them all here, once (`read`), into
a frozen `Settings` it passes down; a script run by hand takes its flags (`--name`) over the same. Only
SUITE_-prefixed variables are read, so a shell's own T, A, B, PORT or DEVICE never leaks into a run; a SUITE_ name
that is no setting is refused. Only entry points (utils/drivers, the scripts' utils.measure.train, the __main__ modules)
import this module. Stdlib only: make help, make reset and the report read it without torch.
"""

import argparse
import dataclasses
import difflib
import os
from dataclasses import dataclass

from utils import catalog, checks, devices

PREFIX = "SUITE_"  # the environment's namespace: SUITE_STEPS is STEPS
SEED_MAX = 2**64 - 1  # torch.manual_seed's range
MODEL_AUTO = "auto (gpt2 on CUDA, tiny on CPU; make plan: gpt2)"
MODEL_HELP = (f"the model: a preset, hf:<name> (a Hugging Face causal LM from its config, random weights: shipped "
              f"names, a config.json, or a hub id where the hub is reachable) or path/to/file.py:function "
              f"(build(seq) -> nn.Module); {MODEL_AUTO}; see docs/models.md")


@dataclass(frozen=True)
class Parse:
    """A setting's check, `parse(name, text)` -> value (raising checks.BadInput), and its value's type."""

    parse: object
    type: object = str

    def __call__(self, name, text):
        return self.parse(name, text)


def _auto(check, word="auto"):
    """`check`, or None for `word` (auto)."""
    return Parse(lambda name, text: None if text == word else check(name, text), check.type | None)


def _int(minimum, maximum=None):
    return Parse(lambda name, text: checks.integer(name, text, minimum, maximum), int)


def _optional(check):
    return Parse(lambda name, text: checks.optional(check, name, text), check.type | None)


def _choice(*allowed):
    def check(name, text):
        if text not in allowed:
            raise checks.BadInput(f"{name} must be one of {', '.join(allowed)}, got {text!r}")
        return text

    return Parse(check)


TEXT = Parse(lambda name, text: text)
_number = Parse(checks.number, float)
_words = Parse(lambda name, text: tuple(text.split()), tuple)
_flag = Parse(lambda name, text: checks.integer(name, text, 0, 1) == 1, bool)
_probability = Parse(checks.probability, float)
_fraction = Parse(lambda name, text: checks.optional(checks.number, name, text, 1), float | None)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    group: str
    check: Parse = TEXT  # its parse and type; TEXT: the text as given
    flag: bool = False  # also a flag of every technique script (--steps, ...)
    path: bool = False  # a file or folder: given blank it is refused ("is empty"), never a default

    @property
    def field(self):
        """Its Settings attribute: STEPS is settings.steps."""
        return self.name.lower()

    def parse(self, text):
        return self.check(self.name, text)


S = Setting
SETTINGS = (
    # one run (every technique script's flags)
    S("STEPS", "50", "measured training steps per run", "run", _int(1), True),
    S("WARMUP", "auto", "warm-up steps, timed apart (auto: 10 on CUDA, 3 on CPU)", "run", _auto(_int(0)), True),
    S("MODEL", "auto", MODEL_HELP, "run", TEXT, True),
    S("LAYERS", "auto", "layers (blocks) of the model: a preset's or an hf: config's (num_hidden_layers; auto: its "
      "own)", "run", _auto(_int(1)), True),
    S("BLOCKS", "auto", "a foreign model's blocks, the nn.ModuleList checkpointing wraps and FSDP2 shards, e.g. "
      "transformer.h (auto: transformer.h, model.layers, ... or its largest ModuleList)", "run", _auto(TEXT), True),
    S("BATCH", "auto", "sequences per step (auto: the preset's, e.g. gpt2 16, tiny 4)", "run", _auto(_int(1)), True),
    S("SEQ", "auto", "tokens per sequence (auto: the preset's, e.g. gpt2 1024, tiny 128)", "run", _auto(_int(1)), True),
    S("DEVICE", "auto", "auto (cuda if torch sees a GPU, else cpu), cpu or cuda", "run", _choice("auto", "cpu", "cuda"),
      True),
    S("DATA", "coinflip", "coinflip (P(1)=2/3 flips), fixed (one batch reused), markov (8-symbol chain, known "
      "entropy rate), a text file (bytes) or a uint16 .bin token file", "run", TEXT, True),
    S("SEED", "1337", "seed for weights and data", "run", _int(0, SEED_MAX), True),
    S("LR", "auto", "learning rate (auto: the optimizer's default from its literature, stated in its script)", "run",
      _auto(_number), True),
    S("ACCUM", "4", "micro-batches of BATCH per optimizer step, for techniques that accumulate", "run", _int(1), True),
    S("GRAD_CLIP", "", "clip the gradients' global norm to this before each optimizer step (clip_grad_norm_, after "
      "fp16's GradScaler unscales them, as AMP's docs do; blank: no clipping)", "run", _optional(_number), True),
    S("COMPILE_MODE", "default", "torch.compile's mode", "run", _choice(*catalog.COMPILE_MODES), True),
    S("COMPILE_SCOPE", "model", "what techniques that compile compile: model (one graph), blocks (each block its own, "
      "a chunked loss's scoring too; a checkpoint inside its graph: torchtitan's way) or blocks_in_checkpoint (each "
      "compiled block inside its checkpoint: torchtune's way)", "run", _choice(*catalog.COMPILE_SCOPES), True),
    S("CHUNK_LOGITS", "recompute", "chunked_ce: recompute (each chunk's logits again in backward: never all) or keep "
      "(all kept: torchtune's CEWithChunkedOutputLoss)", "run", _choice(*catalog.CHUNK_LOGITS), True),
    S("LORA_RANK", "8", "lora: the adapters' rank r (torchtune's Llama 3.1 8B LoRA: 8)", "run", _int(1), True),
    S("LORA_ALPHA", "16", "lora: the adapters' scale is alpha / r (torchtune's 8B LoRA: 16)", "run", _number, True),
    S("LORA_DROPOUT", "0", "lora: dropout on the adapters' input, from 0 up to 1", "run", _probability, True),
    S("LORA_TARGETS", "auto", "lora: the modules adapted, by name suffix, comma-separated (auto: the LoRA paper's "
      "query and value projections: q_proj,v_proj, or a fused qkv such as the suite's GPT's c_attn); a MoE "
      "block's expert weights by theirs (experts.gate_up_proj: PEFT's target_parameters)", "run", TEXT, True),
    S("EVAL_EVERY", "auto", "evaluate on held-out data every N training steps (auto: STEPS/5; 0: never)", "run",
      _auto(_int(0)), True),
    S("EVAL_BATCHES", "4", "held-out batches per evaluation", "run", _int(1), True),
    S("TARGET_LOSS", "", "validation loss to reach: runs, report and grid say when it was (blank: none)", "run",
      _optional(_number), True),
    S("RESULTS_FILE", "results.csv", "the CSV rows are appended to (and read from)", "run", TEXT, True, True),
    S("PEAK_TFLOPS", "table", "dense peak TFLOP/s for MFU on a device or precision the table has none for, a run's "
      "and the report's rows (table: utils/devices.py only)", "run", _auto(_number, "table"), True),
    S("REPEAT", "0", "repeat index written to a run's rows (make all sets it for each run)", "run", _int(0), True),
    S("SUMMARY_FILE", "", "where a run also writes its outcome as JSON, for the driver that started it", "run"),
    S("REFERENCE_RANKS", "1", "train one process on N ranks' data, their N micro-batches accumulated per step (make "
      "ddp / fsdp's loss check sets it)", "run", _int(1), True),
    # make all
    S("TECHNIQUES", "", "what make all, plan and maxbatch run, in order (blank: every script, baseline first); "
      "make tune: the techniques that change what is learnt to add to its space (blank: none)", "all", _words),
    S("REPEATS", "1", "runs per technique, each a fresh process, interleaved A B C A B C", "all", _int(1)),
    S("CI_HALF_WIDTH", "", "e.g. 0.02: interleaved rounds until each technique's CI is within +-2%", "all", _fraction),
    S("MAX_REPEATS", "10", "with CI_HALF_WIDTH: at most this many runs per technique (3 at least)", "all", _int(3)),
    S("TIME_BUDGET_MIN", "30", "with CI_HALF_WIDTH: start no round ending past this many minutes", "all", _number),
    # report, plots, compare
    S("REPORT", "REPORT.md", "where make report writes", "report", path=True),
    S("PLOTS_DIR", "plots", "where plots and profiles go", "report", path=True),
    S("PLOTSPREFIX", "", "prefix of plot file names, e.g. h100_", "report"),
    S("DEVICE_FILTER", "", "report / plots: only devices whose name contains this, e.g. H100", "report"),
    S("BUDGET_GIB", "", "report: also name the technique shown faster than the baseline (the greatest speedup) whose "
      "peak memory fits in this many GiB", "report", _optional(_number)),
    S("A", "sgd", "make compare: the first technique", "report"),
    S("B", "adam", "make compare: the second technique", "report"),
    S("PART", "step", "make compare, plots' box and bootstrap: the part of the step timed: step (whole), forward, "
      "backward, or optimizer (its step and zero_grad: the SGD-vs-Adam study's figure)", "report",
      _choice(*catalog.STEP_PARTS)),
    # one technique elsewhere: profile, lrsweep, torchrun
    S("TECHNIQUE", "baseline", "the technique of make run, profile, lrsweep, ddp, fsdp, scaling_gpus (and maxbatch "
      "when given)", "technique"),
    S("T", "", "the technique or '+' combination, e.g. bf16+checkpointing+lion: TECHNIQUE's, shorter, and where "
      "TECHNIQUES is blank the one technique of make all, plan and maxbatch (blank: TECHNIQUE)", "technique"),
    S("LRS", "", "make lrsweep: the LRs (blank: 1e-4 to 1 in half decades)", "technique", _words),
    S("NPROC", "2", "make ddp / fsdp / scaling_gpus: processes, at most one per GPU (or CPU core); make plan "
      "PARALLEL=...: the GPUs planned", "technique", _int(1)),
    S("PORT", "", "make ddp / fsdp: rendezvous port (blank: torchrun --standalone picks one)", "technique",
      _optional(_int(1, 65535))),
    S("LOSS_CHECK", "1", "make ddp / fsdp: compare the losses with one process on the same global batch, NPROC "
      "micro-batches of BATCH accumulated (0: skip)", "technique", _flag),
    S("KIND", "ddp", "make scaling_gpus: ddp or fsdp", "technique", _choice("ddp", "fsdp")),
    # the LSTM-vs-GPT grid
    S("GRID_MODELS", "tiny lstm", "make grid: the model presets", "grid", _words),
    S("GRID_LAYERS", "1 2 4", "make grid: the depths", "grid", _words),
    S("GRID_OPTIMIZERS", "adam adamw sgd momentum", "make grid: the optimizer techniques", "grid", _words),
    S("GRID_LRS", "", "make grid: per-optimizer LRs, e.g. 'sgd=0.3 momentum=0.03' (else each script's own)", "grid"),
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
    S("GPU_MEMORY_GIB", "", "planned GPU's memory in GiB instead of the table's (a card of another size)", "memory",
      _optional(_number)),
    S("PARALLEL", "", "make plan / maxbatch PLAN=1 / matrix PLAN=1: ddp or fsdp plans rank 0 of NPROC GPUs "
      "(blank: one GPU); make ddp / fsdp set it for their processes", "memory"),
    S("NODES", "1", "make plan PARALLEL=...: the nodes the NPROC GPUs span (NPROC / NODES per node, at most "
      f"{devices.GPUS_PER_NODE}; the links between them: utils/devices.py)", "memory", _int(1)),
    S("ALLOCATOR", "native", "planned CUDA caching allocator: native, or expandable_segments "
      "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)", "memory", _choice(*devices.ALLOCATOR_MODES)),
    S("MODULE_LOADING", "lazy", "planned CUDA module loading: lazy (torch >= 1.13 with CUDA >= 11.7), or eager "
      "(older, or CUDA_MODULE_LOADING=EAGER): sets the CUDA context's size", "memory",
      _choice(*devices.MODULE_LOADINGS)),
    S("MAXMEM_GIB", "", "make maxbatch on a CPU: hard memory cap of each trial process, GiB", "memory",
      _optional(_number)),
    S("SCALING_MODELS", "tiny small gpt2 gpt2-medium gpt2-large gpt2-xl gpt-2.7b",
      "make scaling: model presets; measured while the machine can, planned beyond", "memory", _words),
    S("SCALING_TECHNIQUES", "baseline lion 8bit stack_memory", "make scaling: the techniques", "memory", _words),
    S("SCALING_TIMEOUT", "300", "make scaling: seconds a run may take, then the rest are planned", "memory", _number),
    # make tune
    S("GLOBAL_BATCH", "auto", "make tune: sequences per optimizer step, which the tuner reaches as micro-batch x "
      "accumulation x GPUs and never changes (auto: BATCH, times NPROC with PARALLEL)", "tune", _auto(_int(1))),
    S("GPUS", "", "make tune: the GPUs to rank, e.g. 'a100-40gb h100-sxm l4' (blank: GPU)", "tune", _words),
    S("COMPILE_TOP", "4", "make tune: plan torch.compile's modes on this many of the fastest eager configurations "
      "(0: on every one; each compiled plan costs seconds)", "tune", _int(0)),
    S("MEMORY_MARGIN", "0.05", "make tune: the GPU memory's share left free", "tune", _probability),
    S("VERIFY", "0", "make tune: measure the top k on this machine (tuned for it: its GPU, or on a CPU its "
      "roofline), fresh processes, and check the winner still learns", "tune", _int(0)),
    S("CONVERGENCE_STEPS", "300", "make tune VERIFY=k: steps of the learning check's two runs", "tune", _int(1)),
    S("TUNE_REPORT", "TUNE.md", "where make tune writes its answer, table and plot link", "tune", path=True),
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
    "tune": "make tune: the fastest setup that fits",
    "session": "make session and the environment",
}


Settings = dataclasses.make_dataclass(
    "Settings", [(s.field, s.check.type) for s in SETTINGS] + [("given", frozenset)], frozen=True,
    namespace={"__doc__": "Every setting, parsed: settings.steps is STEPS (utils/settings.py's table says what each "
               "means); `given`: the names the user set.", "__module__": __name__},  # picklable: make tune's workers
)


def variable(name):
    """The environment variable a setting is read from."""
    return PREFIX + name


def environ(texts):
    """{NAME: text} as the environment entries a child process reads them from."""
    return {variable(name): str(text) for name, text in texts.items()}


def _unknown(env):
    """Refuse a SUITE_ variable that is no setting (a typo on make's command line), naming the nearest."""
    for key in sorted(env):
        name = key[len(PREFIX):]
        if key.startswith(PREFIX) and name not in BY_NAME:
            near = difflib.get_close_matches(name, BY_NAME, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise checks.BadInput(f"{name} is not a setting{hint}; make help lists them")


def _text(setting, env):
    """The setting as given, else its default; blank means the default, but for a path (refused where checked)."""
    given = env.get(variable(setting.name))
    return given if given or (setting.path and given is not None) else setting.default


def text(name, env=None):
    """One setting's text as given, unchecked: only for what must be known even when the others are
    refused (a run's SUMMARY_FILE)."""
    return _text(BY_NAME[name], os.environ if env is None else env)


def read(env=None, argv=None, prog=None):
    """Every setting, checked and parsed once (raises checks.BadInput with one line): from `env`
    (None: this process's environment), and for a technique script (`argv` not None) its flags
    over them."""
    env = os.environ if env is None else env
    _unknown(env)
    texts = {s.name: _text(s, env) for s in SETTINGS}
    given = {s.name for s in SETTINGS if env.get(variable(s.name))}
    if argv is not None:
        flagged = {k: v for k, v in vars(script_parser(prog or "script").parse_args(argv)).items() if v is not None}
        texts.update(flagged)
        given |= set(flagged)
    return Settings(**{s.field: s.parse(texts[s.name]) for s in SETTINGS}, given=frozenset(given))


def script_parser(prog):
    """The flags of a technique script: one per run setting, over the environment's."""
    parser = argparse.ArgumentParser(prog=prog, description="train one technique, append its rows to a CSV")
    for s in FLAGS:
        parser.add_argument(f"--{s.name.lower().replace('_', '-')}", dest=s.name,
                            help=f"{s.help} [{variable(s.name)}, default {s.default or 'blank'}]")
    return parser
