"""The optimizer stage: one function per optimizer, each building it over the model's final
parameters (after the parallel stage has sharded them, under FSDP2)."""

import logging
import warnings

import torch

from utils.models.hf import quiet
from utils.techniques import in_backward
from utils.techniques.adapters import IMPORT_NOISE
from utils.techniques.run import Skip, on_cuda, technique

WEIGHT_DECAY = 0.1
# the learning rate when LR is not given: GPT-3 Small's (Brown et al. 2020, table 2.1), nanoGPT's
# default. An optimizer whose literature says otherwise gets its own from its script (default_lr=).
ADAMW_LR = 6e-4
BETAS = (0.9, 0.95)
# bitsandbytes' CPU backend warns at import about an optional 4-bit kernel package no technique uses;
# only that module is quietened: its CUDA loader's warnings (no binary for this CUDA) must be seen
QUIET_BITSANDBYTES_LOGGER = "bitsandbytes.backends.cpu.ops"
logging.getLogger(QUIET_BITSANDBYTES_LOGGER).setLevel(logging.ERROR)
# compiling torchao's 8-bit step asks each state for a hash AOTAutograd's cache would key on: it has none,
# so that graph is not cached, which is no news of the run
warnings.filterwarnings("ignore", message="OptimState8bit does not implement _stable_hash_for_caching")


def _lr(run, default_lr):
    return default_lr if run.cfg.lr is None else run.cfg.lr


def _param_groups(model):
    # as nanoGPT: decay matrices and embeddings, not biases or layernorm gains
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


@technique
def adamw(run):
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = torch.optim.AdamW(_param_groups(run.model), lr=run.lr, betas=BETAS)


@technique
def adam(run, default_lr=ADAMW_LR):
    run.lr = _lr(run, default_lr)
    # classic Adam: no decoupled weight decay (that is AdamW's change)
    run.optimizer = torch.optim.Adam(run.model.parameters(), lr=run.lr, betas=BETAS)


@technique
def sgd(run, momentum=0.0, default_lr=ADAMW_LR):
    run.lr = _lr(run, default_lr)
    run.optimizer = torch.optim.SGD(run.model.parameters(), lr=run.lr, momentum=momentum)


@technique
def fused_adamw(run):
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = torch.optim.AdamW(_param_groups(run.model), lr=run.lr, betas=BETAS, fused=True)


def _bitsandbytes(run):
    """bitsandbytes, once it is known to run here. Its optimizers on CUDA need its native CUDA
    binary; without one it loads a stand-in that raises at the first kernel (mid-step), so
    that is refused here, before anything trains. Note its 8-bit optimizers synchronise the
    host with the GPU after every parameter's update (bitsandbytes 0.50.2, Optimizer8bit.step
    -> utils.sync_gpu): a cost of its step loop, paid per parameter tensor, beside the
    quantisation's."""
    try:
        import bitsandbytes
    except ImportError as err:
        raise Skip(f"bitsandbytes is not importable ({err}); pip install bitsandbytes==0.50.2") from None
    if not (on_cuda(run) and torch.cuda.is_available()):
        return bitsandbytes
    from bitsandbytes import cextension

    if isinstance(cextension.lib, cextension.ErrorHandlerMockBNBNativeLibrary):
        why = next((line.strip() for line in str(getattr(cextension.lib, "error_msg", "")).splitlines()
                    if line.strip()), "no binary found")
        raise Skip(f"bitsandbytes {bitsandbytes.__version__} cannot load its CUDA binary for torch's CUDA "
                   f"{torch.version.cuda} ({why[:150]}); install a bitsandbytes built for it")
    return bitsandbytes


@technique
def adamw_8bit(run):
    bnb = _bitsandbytes(run)
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = bnb.optim.AdamW8bit(_param_groups(run.model), lr=run.lr, betas=BETAS)


@technique
def paged_adamw_8bit(run):
    """bitsandbytes PagedAdamW8bit: AdamW8bit's state in CUDA unified memory, which the driver
    pages out to host memory when the GPU runs short (a spike survives where it would OOM).
    Unified memory is outside PyTorch's allocator: torch.cuda's allocated and reserved figures
    never count the state; the device total does while it is resident. On a CPU bitsandbytes
    falls back to ordinary buffers (it says so)."""
    bnb = _bitsandbytes(run)
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = bnb.optim.PagedAdamW8bit(_param_groups(run.model), lr=run.lr, betas=BETAS)


@technique
def torchao_adamw_8bit(run):
    """torchao's AdamW8bit: AdamW's two moments block-quantised to uint8 (blocks of 256, an fp32
    scale each; a tensor under 4096 elements, or not a whole number of blocks, keeps its state in
    its own dtype), each parameter's step one torch.compile'd function computing in fp32
    (torchao/optim/adam.py, single_param_adam), compiled once per parameter shape at the first step,
    in the warm-up."""
    try:
        with quiet(*IMPORT_NOISE):
            from torchao.optim import AdamW8bit
    except ImportError as err:
        raise Skip(f"torchao is not importable ({err}); pip install torchao==0.18.0") from None
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = AdamW8bit(_param_groups(run.model), lr=run.lr, betas=BETAS)
    run.optimizer_compiles = True


@technique
def step_in_backward(run):
    """Each parameter's optimizer step taken in backward, its gradient freed at once
    (utils/techniques/in_backward.py), the optimizer already chosen kept."""
    run.optimizer = in_backward.wrap(run.optimizer)
    run.step_in_backward = True


@technique
def lion(run, lr_scale, weight_decay_scale):
    try:
        Lion = _bitsandbytes(run).optim.Lion
    except Skip as why:
        try:
            from lion_pytorch import Lion
        except ImportError:
            raise Skip(f"Lion needs bitsandbytes or lion-pytorch: {why}") from None
    _lion_with(run, Lion, lr_scale, weight_decay_scale)


def _lion_with(run, optimizer_class, lr_scale, weight_decay_scale):
    run.lr = _lr(run, ADAMW_LR) * lr_scale  # the Lion paper states its LR relative to AdamW's
    groups = _param_groups(run.model)
    for group in groups:
        group["weight_decay"] *= weight_decay_scale
    run.optimizer = optimizer_class(groups, lr=run.lr, betas=(0.9, 0.99))  # the Lion paper's defaults


@technique
def lion_8bit(run, lr_scale, weight_decay_scale):
    """bitsandbytes Lion8bit: Lion's one moment, block-wise quantised to uint8 (1 byte per parameter)."""
    _lion_with(run, _bitsandbytes(run).optim.Lion8bit, lr_scale, weight_decay_scale)


@technique
def offload_adamw(run):
    """torchao's CPUOffloadOptimizer: AdamW's state and step on the host, the GPU keeps
    parameters and gradients (tensors under 4096 elements stay on the GPU)."""
    if not (on_cuda(run) and torch.cuda.is_available()):
        raise Skip("offload moves the optimizer state from CUDA memory to the host; a CPU has nothing to offload")
    try:
        from torchao.optim import CPUOffloadOptimizer
    except ImportError as err:
        raise Skip(f"torchao is not importable ({err}); pip install torchao==0.18.0") from None
    run.lr = _lr(run, ADAMW_LR)
    run.optimizer = CPUOffloadOptimizer(_param_groups(run.model), torch.optim.AdamW, lr=run.lr, betas=BETAS)


