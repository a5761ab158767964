"""The run state the technique functions change, and the order they must change it in."""

import contextlib
import functools
from dataclasses import dataclass, field

import torch

from utils import catalog, models
from utils.catalog import FUNCTIONS, STAGES
from utils.techniques import parallel, step


class Skip(Exception):
    """This technique cannot run here; str(self) tells the user why."""


@dataclass
class Run:
    """The model and settings that the measuring loop will train, and what was applied."""

    cfg: object  # utils.measure.config.RunConfig
    model: torch.nn.Module  # a utils.models.costed.Costed: cost and attention probe are asked of it
    build: object = None  # (mlp=...) -> a fresh seeded model on the device (architecture stage)
    train_model: torch.nn.Module = None  # what the loop calls: the model, or its wrapped / compiled form
    optimizer: torch.optim.Optimizer = None
    autocast_dtype: torch.dtype = None
    scaler: torch.amp.GradScaler = None  # disabled (a no-op) unless fp16 enables it
    dtype: str = "fp32"
    mlp: str = "gelu"
    lr: float = None
    compile_mode: str = ""
    compile_scope: str = ""  # what was compiled: "" (nothing), one of catalog.COMPILE_SCOPES (compile_model)
    checkpointing: str = ""  # what backward recomputes: "" (nothing), "block" or "selective" (checkpoint_blocks)
    adapter: str = ""  # what trains besides nothing: "" (every weight), or the adapters' description
    # the context each micro-batch's forward runs in: what autograd saves for backward, and where
    saved_tensors: object = contextlib.nullcontext
    activation_offload: bool = False
    step_in_backward: bool = False  # each parameter's optimizer step taken as its gradient is ready
    optimizer_compiles: bool = False  # the optimizer's step is torch.compile'd as it first runs (torchao's 8-bit)
    accum: int = 1  # micro-batches per optimizer step
    step: object = None  # utils.techniques.step.EagerStep, or CudaGraphStep
    # context for a micro-batch whose gradients stay local (every one of a step but the last):
    # a no-op unless the parallel stage has gradients to synchronise
    no_sync: object = contextlib.nullcontext
    applied: list = field(default_factory=list)  # stage names, in the order applied

    def __post_init__(self):
        self.train_model = self.model
        self.mlp = getattr(self.model, "mlp_name", self.mlp)  # a foreign model's own MLP: "own"
        self.scaler = torch.amp.GradScaler(self.cfg.device, enabled=False)
        self.step = step.EagerStep()

    @property
    def graphed(self):
        """The step replays CUDA graphs (cudagraphs, or compile's graph-capturing modes)."""
        return self.step.graphed or self.compile_mode in catalog.GRAPHED_COMPILE_MODES

    def flops_per_token(self, seq):
        """The model's FLOPs per token (utils/models/), less 2 per frozen matmul weight: backward
        computes no gradient for a weight that needs none (LoRA's frozen base), only its input's."""
        frozen = {id(m.weight): m.weight.numel() for m in self.model.modules()
                  if not isinstance(m, torch.nn.Embedding) and isinstance(getattr(m, "weight", None), torch.Tensor)
                  and m.weight.dim() == 2 and not m.weight.requires_grad}
        return self.model.flops_per_token(seq) - 2 * sum(frozen.values())

    def record(self):
        """What will run, in results.csv's terms (the attention kernel is probed later)."""
        opt = getattr(self.optimizer, "template", self.optimizer)  # stepped in backward: the class each parameter's is
        return {
            "dtype": self.dtype,
            "mlp": self.mlp,
            "optimizer": f"{'.'.join(type(opt).__module__.split('.')[:2])}.{type(opt).__name__}" if opt else "",
            "fused": bool(opt and getattr(opt, "defaults", {}).get("fused")),  # torchao's offload has no defaults
            "compiled": bool(self.compile_mode),
            "compile_mode": self.compile_mode,
            "compile_scope": self.compile_scope,
            "checkpointing": bool(self.checkpointing),
            "checkpoint_policy": self.checkpointing,
            "loss_chunks": self.model.loss_chunks,
            "chunk_logits": self.model.chunk_logits if self.model.loss_chunks > 1 else "",
            "activation_offload": self.activation_offload,
            "step_in_backward": self.step_in_backward,
            "adapter": self.adapter,
            "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            "accum": self.accum,
            "grad_clip": self.cfg.grad_clip,
            "cuda_graphs": self.step.graphed,
            "lr": self.lr if opt else "",
            "blocks": getattr(self.model, "blocks_text", ""),
            "flops_source": getattr(self.model, "flops_source", ""),
        }


def new_run(cfg, device=None):
    """A Run of cfg's model (MODEL, LAYERS, BLOCKS, SEQ), seeded, moved to `device` (None: left where
    it was made, as the planner's fake tensors are): the one way a model is built for
    training and for planning alike."""

    def build(mlp="gelu"):
        torch.manual_seed(cfg.seed)  # the same weights whichever technique builds it
        model = models.build_model(cfg.model, cfg.seq, mlp=mlp, layers=cfg.layers, blocks=cfg.blocks)
        return model if device is None else model.to(device)

    return Run(cfg, build(), build=build)


def technique(function):
    """A technique function: it enters its stage (utils/catalog.py's FUNCTIONS, the one table
    of which function belongs to which stage) before it changes the run."""
    stage = FUNCTIONS[function.__name__][0]

    @functools.wraps(function)
    def apply(run, *args, **kwargs):
        enter(run, stage)
        return function(run, *args, **kwargs)

    apply.stage = stage
    return apply


def enter(run, stage):
    """Mark `stage` as applied; refuse it after a later stage, and apply the parallel stage
    first when `stage` comes after it."""
    if run.applied and STAGES.index(stage) < STAGES.index(run.applied[-1]):
        raise ValueError(
            f"'{stage}' applied after '{run.applied[-1]}': techniques apply in the order {', '.join(STAGES)}"
        )
    if stage != "parallel" and STAGES.index(stage) > STAGES.index("parallel"):
        parallelize(run)
    run.applied.append(stage)


def parallelize(run):
    """The parallel stage: DDP or FSDP2 when the run is one of several ranks, once."""
    if run.cfg.world.kind and "parallel" not in run.applied:
        run.applied.append("parallel")
        parallel.wrap(run)


def on_cuda(run):
    return run.cfg.device == "cuda"
