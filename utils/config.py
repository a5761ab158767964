"""Make variables / command-line flags -> one validated RunConfig.

Every script takes the same flags; each defaults to the environment variable Make exports
(STEPS, WARMUP, MODEL, ...), so `make bf16 STEPS=20` and `python scripts/bf16.py --steps 20`
are the same run. Bad input stops here, before the model is built or any file is touched.
"""

import argparse
import math
import os
from dataclasses import dataclass

import torch

from utils import checks, data, models, parallel, results
from utils.models import PRESETS
from utils.techniques import COMPILE_MODES

SEED_MAX = 2**64 - 1  # torch.manual_seed's range
ConfigError = checks.BadInput  # bad input: reported as one line, exit status 2


@dataclass(frozen=True)
class RunConfig:
    technique: str
    steps: int
    warmup: int
    model: str
    batch: int
    seq: int
    device: str
    data: str
    seed: int
    lr: float
    results_file: str
    repeat: int = 0
    peak_tflops: float = None  # None: from the device table
    compile_mode: str = "default"  # read by techniques that compile
    accum: int = 4  # read by techniques that accumulate gradients
    world: parallel.World = parallel.World()  # this rank under torchrun (make ddp / fsdp); one process otherwise
    layers: int = None  # None: the preset's
    eval_every: int = 0  # evaluate every this many training steps (warm-up included); 0: never
    eval_batches: int = 4  # held-out batches per evaluation
    target_loss: float = None  # validation loss the run reports reaching (TARGET_LOSS)


# flag -> (environment variable, default, help)
FLAGS = {
    "steps": ("STEPS", "50", "measured training steps"),
    "warmup": ("WARMUP", "auto", "untimed-for-the-result warm-up steps (auto: 10 on CUDA, 3 on CPU)"),
    "model": ("MODEL", "auto", f"preset: auto (gpt2 on CUDA, tiny on CPU) or {', '.join(PRESETS)}"),
    "batch": ("BATCH", "auto", "sequences per step (auto: the preset's)"),
    "seq": ("SEQ", "auto", "tokens per sequence (auto: the preset's)"),
    "device": ("DEVICE", "auto", "auto, cpu or cuda"),
    "data": (
        "DATA",
        "coinflip",
        "coinflip (seed 000's P(1)=2/3 flips), fixed (one batch reused) or a text file (bytes)",
    ),
    "seed": ("SEED", "1337", "seed for weights and data"),
    "lr": ("LR", "auto", "learning rate (auto: the optimizer's default from its literature, see its script)"),
    "results_file": ("RESULTS_FILE", "results.csv", "CSV the rows are appended to"),
    "repeat": ("REPEAT", "0", "repeat index written to the rows (make all REPEATS=N sets it)"),
    "peak_tflops": ("PEAK_TFLOPS", "table", "dense peak TFLOP/s for MFU (table: from utils/mfu.py by device)"),
    "compile_mode": (
        "COMPILE_MODE",
        "default",
        f"torch.compile mode of techniques that compile: {', '.join(COMPILE_MODES)}",
    ),
    "accum": ("ACCUM", "4", "micro-batches of BATCH per optimizer step, for techniques that accumulate"),
    "layers": ("LAYERS", "auto", "layers of the model (auto: the preset's), e.g. seed 004's 1, 2, 4"),
    "eval_every": ("EVAL_EVERY", "auto", "evaluate on held-out data every N training steps (auto: STEPS/5; 0: never)"),
    "eval_batches": ("EVAL_BATCHES", "4", "held-out batches per evaluation"),
    "target_loss": ("TARGET_LOSS", "", "validation loss to reach: the summary says when it was (blank: none)"),
}


def positive_int(name, text):
    return _int(name, text, 1)


def _int(name, text, minimum, maximum=None):
    return checks.integer(name, text, minimum, maximum)


def positive_float(name, text):
    return checks.number(name, text)


def _auto(text, default):
    return str(default) if text == "auto" else text


def _device(text):
    if text not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"DEVICE must be auto, cpu or cuda, got {text!r}")
    if text == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"DEVICE=cuda but torch {torch.__version__} sees no CUDA GPU")
    if text == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return text


def _eval_every(text, steps):
    if text == "auto":
        return math.ceil(steps / 5)  # five evaluations after the first, whatever STEPS is
    every = _int("EVAL_EVERY", text, 0)
    if every > steps:
        raise ConfigError(f"EVAL_EVERY={every} is larger than STEPS={steps}: no evaluation would fall inside the run")
    return every


def check_target(target, source):
    """Refuse a target loss below what the data allows (its entropy rate)."""
    floor = data.floor(source)
    if target is not None and floor is not None and target < floor:
        raise ConfigError(data.below_floor(target, source, floor))


def _check_learning(cfg):
    """Data, evaluation and target settings that would make the run meaningless."""
    try:
        data.check(cfg.data, cfg.batch, cfg.seq, models.vocab_size(cfg.model))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_target(cfg.target_loss, cfg.data)
    if cfg.target_loss is not None and not cfg.eval_every:
        raise ConfigError("TARGET_LOSS is judged on validation loss, but EVAL_EVERY=0 turns evaluation off")


def parse_args(technique, argv=None):
    parser = argparse.ArgumentParser(
        prog=f"scripts/{technique}.py", description=f"train with '{technique}', append rows to a results CSV"
    )
    for flag, (env, default, text) in FLAGS.items():
        parser.add_argument(
            f"--{flag.replace('_', '-')}",
            default=os.environ.get(env) or default,
            help=f"{text} [{env}, default {default}]",
        )
    return parser.parse_args(argv)


def load(technique, argv=None, check_results=True):
    args = parse_args(technique, argv)
    device = _device(args.device)
    model = ("gpt2" if device == "cuda" else "tiny") if args.model == "auto" else args.model
    if model not in PRESETS:
        raise ConfigError(f"unknown MODEL {model!r}; presets: {', '.join(PRESETS)}")
    _, default_batch, default_seq = PRESETS[model]
    steps = positive_int("STEPS", args.steps)
    if args.compile_mode not in COMPILE_MODES:
        raise ConfigError(f"COMPILE_MODE must be one of {', '.join(COMPILE_MODES)}, got {args.compile_mode!r}")
    cfg = RunConfig(
        technique=technique,
        steps=steps,
        warmup=_int("WARMUP", _auto(args.warmup, 10 if device == "cuda" else 3), 0),
        model=model,
        batch=positive_int("BATCH", _auto(args.batch, default_batch)),
        seq=positive_int("SEQ", _auto(args.seq, default_seq)),
        device=device,
        data=args.data,
        seed=_int("SEED", args.seed, 0, SEED_MAX),
        lr=None if args.lr == "auto" else positive_float("LR", args.lr),
        results_file=args.results_file,
        repeat=_int("REPEAT", args.repeat, 0),
        peak_tflops=None if args.peak_tflops == "table" else positive_float("PEAK_TFLOPS", args.peak_tflops),
        compile_mode=args.compile_mode,
        accum=positive_int("ACCUM", args.accum),
        world=parallel.world_from_env(),
        layers=None if args.layers == "auto" else positive_int("LAYERS", args.layers),
        eval_every=_eval_every(args.eval_every, steps),
        eval_batches=positive_int("EVAL_BATCHES", args.eval_batches),
        target_loss=positive_float("TARGET_LOSS", args.target_loss) if args.target_loss else None,
    )
    if cfg.data not in data.SOURCES:
        _check_data_file(cfg.data)
    _check_learning(cfg)
    if check_results:
        results.check_appendable(cfg.results_file)
    return cfg


def _check_data_file(path):
    # a readable file; whether it holds a batch of each split is data.check's question
    try:
        checks.input_file("DATA", path)
    except checks.BadInput as err:
        raise ConfigError(f"{err} (DATA is {', '.join(data.SOURCES)}, a text file or a .bin token file)") from None
