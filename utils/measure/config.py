"""Settings -> one validated RunConfig for a technique script.

Every script takes the same flags (utils/settings.py's run settings); each defaults to the
environment variable Make exports (SUITE_STEPS, SUITE_MODEL, ...), so `make bf16 STEPS=20` and
`python scripts/bf16.py --steps 20` are the same run. The entry point parses them; bad input
stops here, before the model is built or any file is touched.
"""

import math
from dataclasses import dataclass

import torch

from utils import catalog, checks, models, registry, requirements, results
from utils.measure import data, env, parallel
from utils.techniques.parallel import World

ConfigError = checks.BadInput  # bad input: reported as one line, exit status 2


@dataclass(frozen=True)
class RunConfig:
    """One run, every field from the settings (utils/settings.py states each default, once) or
    resolved from them (the model's layers and vocabulary, the device, the ranks)."""

    technique: str
    steps: int
    warmup: int
    model: str
    batch: int
    seq: int
    device: str
    data: str
    seed: int
    lr: float | None  # None: the optimizer's own default, stated in its script
    results_file: str
    repeat: int
    peak_tflops: float | None  # None: from the device table
    compile_mode: str  # read by techniques that compile
    compile_scope: str  # what they compile: the whole model, or each of its blocks
    chunk_logits: str  # read by chunked_ce: each chunk's logits recomputed in backward, or kept
    accum: int  # read by techniques that accumulate gradients
    grad_clip: float | None  # the gradients' global norm clipped to this before each optimizer step (None: not)
    lora_rank: int  # read by lora: the adapters' rank
    lora_alpha: float  # their scale, alpha / rank
    lora_dropout: float  # dropout on their input
    lora_targets: str  # the modules adapted (auto: the query and value projections)
    world: World  # this rank under torchrun (make ddp / fsdp); one process otherwise
    layers: int  # LAYERS, or the model's own
    eval_every: int  # evaluate every this many training steps (warm-up included); 0: never
    eval_batches: int  # held-out batches per evaluation
    target_loss: float | None  # validation loss the run reports reaching (TARGET_LOSS)
    blocks: str | None  # BLOCKS: a foreign model's blocks (None: found)
    vocab_size: int | None  # the model's vocabulary (None: unknown, a file's module without an embedding)
    reference_ranks: int  # the loss check's one process: train on N ranks' slices, accumulated (data.batches)


def _device(text):
    if text == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"DEVICE=cuda but torch {torch.__version__} sees no CUDA GPU")
    if text != "auto":
        return text
    if torch.cuda.is_available():
        return "cuda"
    gpus = env.visible_gpus()
    if gpus:  # a GPU box whose torch cannot use its GPU: its CPU figures must not pass for the GPU's
        raise ConfigError(
            f"DEVICE=auto: nvidia-smi lists {len(gpus)} GPU(s) ({gpus[0]}) but torch {torch.__version__} "
            f"(CUDA {torch.version.cuda or 'none: a CPU build'}) cannot use them; install a torch built for this "
            "driver, or set DEVICE=cpu to measure the CPU on purpose"
        )
    return "cpu"


def check_technique(technique, compile_mode, accum, reference_ranks=1, parallel="", grad_clip=None):
    """What a technique's settings forbid, refused before it builds anything: a part that cannot run
    under `parallel` (ddp, fsdp: catalog.NOT_PARALLEL) or with GRAD_CLIP (catalog.NOT_CLIPPED); a part that refuses
    accumulation (catalog.CONFLICTS) where REFERENCE_RANKS accumulates the ranks' micro-batches; compile's CUDA-graph
    modes with gradient accumulation, whose graphs overwrite the outputs one micro-batch's backward still needs
    (pytorch/pytorch#169545: silently wrong gradients)."""
    functions = registry.functions_of(technique)
    refused = sorted(f for f in functions if parallel in catalog.NOT_PARALLEL.get(f, ((), ""))[0])
    if refused:
        raise ConfigError(f"{technique} cannot run under {parallel}: {catalog.NOT_PARALLEL[refused[0]][1]}")
    unclipped = sorted(functions & catalog.NOT_CLIPPED.keys()) if grad_clip else []
    if unclipped:
        raise ConfigError(f"{technique} cannot clip gradients (GRAD_CLIP={grad_clip:g}): "
                          f"{catalog.NOT_CLIPPED[unclipped[0]]}")
    unaccumulated = sorted(f for f in functions if frozenset((f, "accumulate")) in catalog.CONFLICTS)
    if unaccumulated and reference_ranks > 1:  # the ranks' micro-batches accumulated, as accum's are
        raise ConfigError(f"{technique} with REFERENCE_RANKS={reference_ranks}: "
                          f"{catalog.CONFLICTS[frozenset((unaccumulated[0], 'accumulate'))]}")
    if compile_mode not in catalog.GRAPHED_COMPILE_MODES:
        return
    micro_batches = (accum if "accumulate" in functions else 1) * reference_ranks
    if "compile_model" in functions and micro_batches > 1:
        raise ConfigError(
            f"{technique} with COMPILE_MODE={compile_mode} accumulates {micro_batches} micro-batches per step: CUDA "
            "graphs overwrite the outputs one micro-batch's backward still needs (pytorch/pytorch#169545); use "
            "COMPILE_MODE=default, or no accumulation"
        )


def model_name(text, device):
    """MODEL as given, auto resolved for `device`, canonical (a shipped hf: config's hub id is
    its shipped name); refused unless it names a model (utils/models: resolve)."""
    model = ("gpt2" if device == "cuda" else "tiny") if text == "auto" else text
    return models.resolve(model).name


def _eval_every(every, steps):
    if every is None:
        return math.ceil(steps / 5)  # five evaluations after the first, whatever STEPS is
    if every > steps:
        raise ConfigError(f"EVAL_EVERY={every} is larger than STEPS={steps}: no evaluation would fall inside the run")
    return every


def check_target(target, source):
    """Refuse a target loss below what the data allows (its entropy rate)."""
    floor = data.floor(source)
    if target is not None and floor is not None and target < floor:
        raise ConfigError(checks.below_floor(target, source, floor))


def _check_learning(cfg):
    """Data, evaluation and target settings that would make the run meaningless."""
    if cfg.data not in data.SOURCES:
        try:
            checks.input_file("DATA", cfg.data)
        except checks.BadInput as err:
            raise ConfigError(f"{err} (DATA is {', '.join(data.SOURCES)}, a text file or a .bin token file)") from None
    try:
        data.check(cfg.data, cfg.batch, cfg.seq, cfg.vocab_size)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_target(cfg.target_loss, cfg.data)
    if cfg.target_loss is not None and not cfg.eval_every:
        raise ConfigError("TARGET_LOSS is judged on validation loss, but EVAL_EVERY=0 turns evaluation off")


def load(technique, settings, check_results=True, world=None):
    """The run config from `settings` (a utils.settings.Settings, parsed by the entry point); `world`:
    the ranks it is for (None: this process's, from torchrun's environment)."""
    if requirements.version_tuple(torch.__version__) < requirements.MIN_TORCH:
        raise ConfigError(f"torch {torch.__version__} is older than {'.'.join(map(str, requirements.MIN_TORCH))}, "
                          "the oldest whose APIs the suite calls")
    device = _device(settings.device)
    model = model_name(settings.model, device)
    default_batch, default_seq = models.default_shape(model)
    steps, seq = settings.steps, settings.seq or default_seq
    models.check_layers(model, settings.layers)
    checked = models.check(model, seq, settings.layers, settings.blocks)
    cfg = RunConfig(
        technique=technique,
        steps=steps,
        warmup=settings.warmup if settings.warmup is not None else (10 if device == "cuda" else 3),
        model=model,
        batch=settings.batch or default_batch,
        seq=seq,
        device=device,
        data=settings.data,
        seed=settings.seed,
        lr=settings.lr,
        results_file=settings.results_file,
        repeat=settings.repeat,
        peak_tflops=settings.peak_tflops,
        compile_mode=settings.compile_mode,
        compile_scope=settings.compile_scope,
        chunk_logits=settings.chunk_logits,
        accum=settings.accum,
        grad_clip=settings.grad_clip,
        lora_rank=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        lora_targets=settings.lora_targets,
        world=world or parallel.world_from_env(settings.parallel, device),
        layers=checked.layers,
        eval_every=_eval_every(settings.eval_every, steps),
        eval_batches=settings.eval_batches,
        target_loss=settings.target_loss,
        blocks=settings.blocks,
        vocab_size=checked.vocab_size,
        reference_ranks=settings.reference_ranks,
    )
    _check_learning(cfg)
    if registry.is_technique(technique):
        check_technique(technique, cfg.compile_mode, cfg.accum, cfg.reference_ranks, cfg.world.kind, cfg.grad_clip)
    if check_results:
        results.check_appendable(cfg.results_file)
    if settings.summary_file:  # the run's one-line outcome, for the driver that started it
        checks.output_file("SUMMARY_FILE", settings.summary_file)
    return cfg
