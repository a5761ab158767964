"""make tune's space: every configuration the techniques' table allows, and why each one left out was.

A configuration is a technique or '+' combination (at most one searched part per stage, as
utils/catalog.py's `tune` roles allow), its compile mode and scope where it compiles, and how the global
batch is reached: micro-batch x accumulation x GPUs. Pruned before any plan: what the GPU cannot
run (compute capability), what a package missing here cannot build, what the catalog declares in
conflict, and what repeats another configuration (tf32 under bf16 or fp16 autocast: no fp32
matmul is left for it to change). Stdlib only: the space is built, and bad input refused,
before torch is imported.
"""

import collections
import importlib.util
import itertools
from dataclasses import dataclass

from utils import checks, registry
from utils.catalog import (
    BASELINE,
    BY_NAME,
    COMPILE_SCOPES,
    NOT_A_CHOICE,
    OPT_IN,
    SAVES_MEMORY,
    SEARCHED,
    STAGES,
    TECHNIQUES,
    compiled_by,
)

COMPILE_MODES = ("default", "reduce-overhead")  # the modes the planner models
UNPLANNED_MODES = {"max-autotune": "its kernels are the winners of timing Triton templates on the GPU",
                   "max-autotune-no-cudagraphs": "its kernels are the winners of timing Triton templates on the GPU"}
HALF_AUTOCAST = {"autocast_bf16", "autocast_fp16"}


@dataclass(frozen=True)
class Config:
    """One configuration: what `make run` (or make fsdp / ddp) would be given."""

    technique: str  # canonical technique or combination (utils/registry.py)
    compile_mode: str = ""  # where it compiles: default or reduce-overhead
    batch: int = 1  # the micro-batch, per GPU
    accum: int = 1  # micro-batches per optimizer step
    gpus: int = 1
    parallel: str = ""  # ddp or fsdp on several GPUs
    compile_scope: str = ""  # what it compiles: one of COMPILE_SCOPES (the whole model, or each block apart)
    nodes: int = 1  # the machines the GPUs span (utils/devices.py's nodes_for: at most 8 GPUs each)

    @property
    def compiled_as(self):
        """How it compiles, where that is not torch.compile's default of the whole model: "" or e.g.
        "reduce-overhead, by blocks"."""
        return ", ".join(([self.compile_mode] if self.compile_mode not in ("", "default") else [])
                         + ([compiled_by(self.compile_scope)] if compiled_by(self.compile_scope) else []))

    def compile_fields(self):
        """The run config's compile fields for this configuration ({} where it does not compile)."""
        if not self.compile_mode:
            return {}
        return {"compile_mode": self.compile_mode, "compile_scope": self.compile_scope or "model"}

    def _settings(self):
        """The compile settings that are not the default, {NAME: value}."""
        return {**({"COMPILE_MODE": self.compile_mode} if self.compile_mode not in ("", "default") else {}),
                **({"COMPILE_SCOPE": self.compile_scope} if compiled_by(self.compile_scope) else {})}

    @property
    def full_name(self):
        """The technique with accumulation where it accumulates (the name a run records)."""
        return join(self.technique, "accum") if self.accum > 1 else self.technique

    @property
    def label(self):
        mode = f" ({self.compiled_as})" if self.compiled_as else ""
        split = f" B={self.batch}" + (f" x{self.accum}" if self.accum > 1 else "")
        return self.full_name + mode + split + (f" on {self.gpus} GPUs ({self.parallel})" if self.gpus > 1 else "")

    def command(self):
        """The command that runs it, as the user would paste it."""
        mode = "".join(f" {name}={value}" for name, value in self._settings().items())
        accum = f" ACCUM={self.accum}" if self.accum > 1 else ""
        if self.nodes > 1:  # make ddp / fsdp start one machine's processes
            return self.torchrun()
        if self.gpus > 1:
            return (f"make {self.parallel} NPROC={self.gpus} TECHNIQUE={self.full_name} BATCH={self.batch}{accum}"
                    f"{mode}")
        return f"make run T={self.full_name} BATCH={self.batch}{accum}{mode}"

    def torchrun(self):
        """On N GPUs, the same as torchrun runs it: on one node, or on each of several with torchrun's
        rendezvous (utils/drivers/launch.py)."""
        settings = f"SUITE_PARALLEL={self.parallel} SUITE_BATCH={self.batch}" + (
            f" SUITE_ACCUM={self.accum}" if self.accum > 1 else "") + "".join(
            f" SUITE_{name}={value}" for name, value in self._settings().items())
        target = f"-m utils.measure.train {self.full_name}" if "+" in self.full_name else f"scripts/{self.full_name}.py"
        where = ("--standalone" if self.nodes == 1 else
                 f"--nnodes={self.nodes} --rdzv-backend=c10d --rdzv-endpoint=HOST:PORT")  # on each node
        return f"{settings} torchrun {where} --nproc_per_node={self.gpus // self.nodes} {target}"


def join(*names):
    """The canonical name of `names` combined (the baseline adds nothing); raises checks.BadInput."""
    parts = [n for n in names if n != BASELINE]
    return registry.combination("+".join(parts) or BASELINE).name


def _stage(name):
    return registry.stage_of(name)


def options(opt_in):
    """{stage: [technique, ...]} searched by default, and the `opt_in` ones (TECHNIQUES) in theirs;
    the memory savers apart (tried only where the step does not fit without them)."""
    bad = [n for n in opt_in if n not in BY_NAME or BY_NAME[n].tune == NOT_A_CHOICE]
    if bad:
        registry.check_scripts(bad, "technique in TECHNIQUES:")  # an unknown name: its own line
        raise checks.BadInput(f"TECHNIQUES={' '.join(bad)}: not a choice of its own to tune (the tuner splits the "
                              "batch and combines techniques itself); name the techniques to add to the space")
    by_stage, savers = collections.defaultdict(list), []
    for t in TECHNIQUES:
        if t.tune == SAVES_MEMORY:
            savers.append(t.name)
        elif t.tune == SEARCHED or (t.tune == OPT_IN and t.name in opt_in):
            by_stage[_stage(t.name)].append(t.name)
    return dict(by_stage), savers


def capable(name, capability):
    """None, or why a GPU of compute `capability` cannot run the technique or combination."""
    for part in registry.combination(name).parts:
        need = BY_NAME[part].min_capability
        if need and tuple(capability) < need:
            return f"{part} needs compute capability {'.'.join(map(str, need))}+"
    return None


def missing_package(name):
    """None, or the package the technique needs that is not installed here."""
    for part in registry.combination(name).parts:
        for package in BY_NAME[part].packages:
            alternatives = package.split(" or ")
            if not any(importlib.util.find_spec(p.replace("-", "_")) for p in alternatives):
                return f"{part} needs {package}, not installed"
    return None


def _redundant(name):
    functions = registry.functions_of(name)
    if "tf32" in functions and functions & HALF_AUTOCAST:
        return "tf32 under half-precision autocast changes no matmul"
    return None


def combinations(by_stage, extra=()):
    """Every technique name the stages' options make (one per stage at most, `extra` parts added),
    canonical and deduplicated, and {name: why} for those the catalog refuses."""
    choices = [[None, *by_stage.get(stage, [])] for stage in STAGES]
    named, refused = {}, {}
    for pick in itertools.product(*choices):
        parts = [p for p in pick if p] + list(extra)
        text = "+".join(parts) or "baseline"
        try:
            name = registry.combination(text).name
        except checks.BadInput as why:
            refused[text] = str(why)
            continue
        named.setdefault(name, text)
    return list(named), refused


def scopes_of(name):
    """The compile scopes that compile `name` differently: blocks_in_checkpoint only where it checkpoints."""
    checkpoints = "checkpoint_blocks" in registry.functions_of(name)
    return [scope for scope in COMPILE_SCOPES if checkpoints or scope != "blocks_in_checkpoint"]


def with_modes(names):
    """(Config per technique, compile mode and scope: every modelled mode and scope where it
    compiles) and the count of unplanned modes left out."""
    configs, unplanned = [], 0
    for name in names:
        if "compile_model" in registry.functions_of(name):
            configs += [Config(name, mode, compile_scope=scope) for mode in COMPILE_MODES for scope in scopes_of(name)]
            unplanned += len(UNPLANNED_MODES)
        else:
            configs.append(Config(name))
    return configs, unplanned


class Pruned(collections.Counter):
    """Configurations left out, counted by reason (with one example each)."""

    def __init__(self):
        super().__init__()
        self.example = {}

    def add(self, reason, example, count=1):
        self[reason] += count
        self.example.setdefault(reason, example)


def _cpu_only(name):
    cuda = [p for p in registry.combination(name).parts if BY_NAME[p].cuda_only]
    return f"{cuda[0]} runs on CUDA only" if cuda else None


def space(opt_in, gpu):
    """(configs to plan on `gpu` (None: this CPU), the memory savers, Pruned): the searched and
    opted-in combinations the catalog allows and the device can run, each compile mode modelled
    (on a CPU the default alone: reduce-overhead's CUDA graphs do not exist there)."""
    by_stage, savers = options(opt_in)
    names, refused = combinations(by_stage)
    pruned = Pruned()
    for text, why in refused.items():
        pruned.add("conflict (the catalog refuses the pair)", f"{text}: {why}")
    kept = []
    for name in names:
        if gpu is None:
            why = _cpu_only(name)
            reason = "CUDA only" if why else None
        else:
            why = capable(name, gpu.capability)
            reason = f"capability ({gpu.name} is {'.'.join(map(str, gpu.capability))})" if why else None
        if not why:
            why = missing_package(name)
            reason = "a package missing here" if why else None
        if not why:
            why = _redundant(name)
            reason = "redundant" if why else None
        if why:
            pruned.add(reason, f"{name}: {why}")
        else:
            kept.append(name)
    configs, unplanned = with_modes(kept)
    if gpu is None:
        graphed = [c for c in configs if c.compile_mode == "reduce-overhead"]
        configs = [c for c in configs if c not in graphed]
        if graphed:
            pruned.add("redundant", f"{graphed[0].technique} (reduce-overhead): no CUDA graphs on a CPU", len(graphed))
    if unplanned:
        mode, why = next(iter(UNPLANNED_MODES.items()))
        pruned.add("compile mode not modelled", f"{mode}: {why}", unplanned)
    return configs, savers, pruned

