"""Techniques: small functions that change a Run, applied in one fixed order.

    1. architecture   swiglu, geglu (rebuild the model, same seed, before anything else)
    2. precision      strict_fp32, tf32, autocast_bf16, autocast_fp16
    3. attention      flash_attention (the model starts with manual attention)
    4. memory         checkpoint_blocks
    5. parallel       DDP or FSDP2 under `make ddp` / `make fsdp` (applied by itself, see below)
    6. optimizer      adamw, fused_adamw, adamw_8bit, lion, adam, sgd, lion_8bit, offload_adamw
    7. compile        compile_model
    8. step           accumulate, cuda_graphs (how the loop drives one optimizer step)

Why this order: the architecture decides the weights everything else acts on; the attention
kernel depends on the precision (flash kernels need half precision on CUDA); checkpointing
wraps the finished blocks; DDP wraps, or FSDP2 shards, the finished model (torchtitan's
order); the optimizer is built once the parameters are final (sharded, under FSDP2); compile
traces the finished model; capturing the whole step in a CUDA graph needs the model, the
optimizer and the micro-batching fixed. Applying a stage after a later one is refused, so any
subset composes (see scripts/stack.py). No script names the parallel stage: under torchrun
it is applied as the run passes it, so every technique runs under DDP and FSDP2 unchanged.
A technique that cannot run on this machine raises
Skip with a reason for the user; the run is then recorded as skipped, not failed.
"""

import importlib.util
from dataclasses import dataclass, field

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

from utils import parallel, step

WEIGHT_DECAY = 0.1
# the learning rate when LR is not given: GPT-3 Small's (Brown et al. 2020, table 2.1), nanoGPT's
# default. An optimizer whose literature says otherwise gets its own from its script (default_lr=).
ADAMW_LR = 6e-4
BETAS = (0.9, 0.95)
STAGES = ("architecture", "precision", "attention", "memory", "parallel", "optimizer", "compile", "step")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class Skip(Exception):
    """This technique cannot run here; str(self) tells the user why."""


@dataclass
class Run:
    """The model and settings that the measuring loop will train, and what was applied."""

    cfg: object  # utils.config.RunConfig
    model: torch.nn.Module  # a utils.model.Costed: cost and attention probe are asked of it
    build: object = None  # () -> a fresh seeded model on the device (architecture stage)
    train_model: torch.nn.Module = None  # what the loop calls: the model, or its compiled form
    optimizer: torch.optim.Optimizer = None
    autocast_dtype: torch.dtype = None
    scaler: torch.amp.GradScaler = None  # disabled (a no-op) unless fp16 enables it
    dtype: str = "fp32"
    mlp: str = "gelu"
    lr: float = None
    compile_mode: str = ""
    checkpointing: bool = False
    accum: int = 1  # micro-batches per optimizer step
    step: object = None  # utils.step.EagerStep, or CudaGraphStep once captured
    applied: list = field(default_factory=list)  # stage names, in the order applied

    def __post_init__(self):
        self.train_model = self.model
        self.scaler = torch.amp.GradScaler(self.cfg.device, enabled=False)
        self.step = step.EagerStep()

    def record(self):
        """What will run, in results.csv's terms (the attention kernel is probed later)."""
        opt = self.optimizer
        return {
            "dtype": self.dtype,
            "mlp": self.mlp,
            "optimizer": f"{'.'.join(type(opt).__module__.split('.')[:2])}.{type(opt).__name__}" if opt else "",
            "fused": bool(opt and getattr(opt, "defaults", {}).get("fused")),  # torchao's offload has no defaults
            "compiled": bool(self.compile_mode),
            "compile_mode": self.compile_mode,
            "checkpointing": self.checkpointing,
            "accum": self.accum,
            "cuda_graphs": self.step.graphed,
            "lr": self.lr if opt else "",
        }


def _enter(run, stage):
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


def _on_cuda(run):
    return run.cfg.device == "cuda"


# 1. architecture


def gated_mlp(run, kind):
    """Rebuild the model with a gated MLP (swiglu / geglu) at the GELU MLP's parameter count."""
    _enter(run, "architecture")
    try:
        run.model = run.train_model = run.build(mlp=kind)
    except ValueError as err:  # a model without an MLP (the LSTM)
        raise Skip(str(err)) from None
    run.mlp = kind


# 2. precision


def strict_fp32(run):
    _enter(run, "precision")
    # fp32 means fp32: pytorch may otherwise run fp32 matmuls on TF32 tensor cores
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    run.dtype = "fp32"


def tf32(run):
    _enter(run, "precision")
    if not _on_cuda(run):
        raise Skip(
            "TF32 is a CUDA tensor-core mode (Ampere and newer); a CPU runs fp32 matmuls as fp32, "
            "so there is nothing to measure"
        )
    major, minor = torch.cuda.get_device_capability()
    if major < 8:
        raise Skip(f"TF32 needs compute capability 8.0 (Ampere) or newer; this GPU is {major}.{minor}")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    run.dtype = "tf32"


def autocast_bf16(run):
    _enter(run, "precision")
    if _on_cuda(run) and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise Skip("this GPU has no native bfloat16 (it needs compute capability 8.0 or newer)")
    # weights, grads and optimizer state stay fp32; matmuls and activations run in bf16
    run.autocast_dtype = torch.bfloat16
    run.dtype = "bf16-autocast"


def autocast_fp16(run):
    _enter(run, "precision")
    # fp16's range is narrow (max 65504): small gradients underflow to zero unless the loss
    # is scaled up first. GradScaler does that and skips a step whose grads hold inf/nan.
    run.autocast_dtype = torch.float16
    run.scaler = torch.amp.GradScaler(run.cfg.device)
    run.dtype = "fp16-autocast"


# 3. attention


def flash_attention(run):
    _enter(run, "attention")
    if _on_cuda(run) and run.autocast_dtype not in (torch.bfloat16, torch.float16):
        raise ValueError("flash attention kernels need fp16/bf16 on CUDA: apply an autocast before flash_attention")
    # the flash-attn package when it can run (CUDA), else pytorch's SDPA, which dispatches
    # to its own flash kernel where the shapes and dtype allow; the kernel that ran is probed
    use_package = _on_cuda(run) and importlib.util.find_spec("flash_attn") is not None
    try:
        run.model.set_attention("flash_attn" if use_package else "sdpa")
    except ValueError as err:
        raise Skip(str(err)) from None


# 4. memory


def checkpoint_blocks(run):
    _enter(run, "memory")
    # keep only each block's input; recompute its activations in backward (torchtitan's
    # wrapper: the model's forward does not know)
    for i, block in enumerate(run.model.blocks):
        run.model.blocks[i] = checkpoint_wrapper(block)
    run.checkpointing = True


# 5. optimizer


def _lr(run, default_lr):
    return default_lr if run.cfg.lr is None else run.cfg.lr


def _param_groups(model):
    # as nanoGPT: decay matrices and embeddings, not biases or layernorm gains
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def adamw(run):
    _enter(run, "optimizer")
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = torch.optim.AdamW(_param_groups(run.model), lr=run.lr, betas=BETAS)


def adam(run, default_lr=ADAMW_LR):
    _enter(run, "optimizer")
    run.lr = _lr(run, default_lr)
    # classic Adam: no decoupled weight decay (that is AdamW's change)
    run.optimizer = torch.optim.Adam(run.model.parameters(), lr=run.lr, betas=BETAS)


def sgd(run, momentum=0.0, default_lr=ADAMW_LR):
    _enter(run, "optimizer")
    run.lr = _lr(run, default_lr)
    run.optimizer = torch.optim.SGD(run.model.parameters(), lr=run.lr, momentum=momentum)


def fused_adamw(run):
    _enter(run, "optimizer")
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = torch.optim.AdamW(_param_groups(run.model), lr=run.lr, betas=BETAS, fused=True)


def _bitsandbytes():
    try:
        import bitsandbytes
    except ImportError as err:
        raise Skip(f"bitsandbytes is not importable ({err}); pip install bitsandbytes==0.50.2") from None
    return bitsandbytes


def adamw_8bit(run):
    _enter(run, "optimizer")
    bnb = _bitsandbytes()
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = bnb.optim.AdamW8bit(_param_groups(run.model), lr=run.lr, betas=BETAS)


def lion(run, lr_scale, weight_decay_scale):
    _enter(run, "optimizer")
    try:
        from bitsandbytes.optim import Lion
    except ImportError:
        try:
            from lion_pytorch import Lion
        except ImportError:
            raise Skip("Lion needs bitsandbytes or lion-pytorch; pip install bitsandbytes==0.50.2") from None
    _lion_with(run, Lion, lr_scale, weight_decay_scale)


def _lion_with(run, optimizer_class, lr_scale, weight_decay_scale):
    run.lr = _lr(run, ADAMW_LR) * lr_scale  # the Lion paper states its LR relative to AdamW's
    groups = _param_groups(run.model)
    for group in groups:
        group["weight_decay"] *= weight_decay_scale
    run.optimizer = optimizer_class(groups, lr=run.lr, betas=(0.9, 0.99))  # the Lion paper's defaults


# 5. optimizer: memory (issue 8)


def lion_8bit(run, lr_scale, weight_decay_scale):
    """bitsandbytes Lion8bit: Lion's one moment, block-wise quantised to uint8 (1 byte per parameter)."""
    _enter(run, "optimizer")
    _lion_with(run, _bitsandbytes().optim.Lion8bit, lr_scale, weight_decay_scale)


def offload_adamw(run):
    """torchao's CPUOffloadOptimizer: AdamW's state and step on the host, the GPU keeps
    parameters and gradients (tensors under 4096 elements stay on the GPU)."""
    _enter(run, "optimizer")
    if not (_on_cuda(run) and torch.cuda.is_available()):
        raise Skip("offload moves the optimizer state from CUDA memory to the host; a CPU has nothing to offload")
    try:
        from torchao.optim import CPUOffloadOptimizer
    except ImportError as err:
        raise Skip(f"torchao is not importable ({err}); pip install torchao==0.18.0") from None
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = CPUOffloadOptimizer(_param_groups(run.model), torch.optim.AdamW, lr=run.lr, betas=BETAS)


# 6. compile


def compile_model(run):
    _enter(run, "compile")
    # the first steps trace and compile; they fall in the warm-up, which is timed apart
    mode = run.cfg.compile_mode
    run.train_model = torch.compile(run.train_model, mode=None if mode == "default" else mode)
    run.compile_mode = mode


# 7. step


def accumulate(run):
    _enter(run, "step")
    # ACCUM micro-batches of BATCH per optimizer step, each loss divided by ACCUM, so the
    # gradient is the mean over all ACCUM x BATCH sequences, as one big batch would give
    run.accum = run.cfg.accum


def cuda_graphs(run):
    _enter(run, "step")
    if not _on_cuda(run):
        raise Skip("CUDA graphs capture GPU kernel launches; a CPU has no graph to replay")
    if run.compile_mode:
        raise ValueError("cuda_graphs captures the eager step; for compiled graphs use COMPILE_MODE=reduce-overhead")
    if run.cfg.world.kind:
        raise Skip("cuda_graphs captures one process's step; under DDP/FSDP the collectives need capturing too")
    run.step = step.CudaGraphStep()
