"""`make plan`: the peak GPU memory of a training step, predicted on any machine.

The technique's own setup builds the model and optimizer, then real training steps run
(forward, loss, backward, optimizer step, zero_grad: the suite's EagerStep) under
`FakeTensorMode`: every tensor has its shape, dtype and storage but no data, so nothing is
allocated and no GPU is needed. PyTorch's `MemTracker` follows every storage and reports
the peak split into parameters, gradients, optimizer state, activations and temporaries.
Two steps run: the optimizer state only exists from the first step on.

The fake tensors live on the CPU device (a CPU-only torch cannot run autograd over fake
CUDA tensors: its autograd engine asks for a CUDA stream). Where CPU and CUDA kernels differ
in what they allocate, the CUDA side is modelled (`CUDA_MODEL` lists each point), and what
could not be modelled is said (`NOT_MODELLED`); a technique whose memory the planner cannot
model is refused, never guessed.
"""

import contextlib
import dataclasses
import logging
import math
import warnings
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.distributed._tools import mem_tracker
from torch.distributed._tools.mem_tracker import MemTracker

from utils.model import build_model
from utils.techniques import Run, Skip

MIB = 2**20
GIB = 2**30
STEPS = 2  # step 1 creates the optimizer state; step 2 is the steady state
# c10/cuda/CUDACachingAllocator.cpp: every block is a multiple of kMinBlockSize = 512 bytes
BLOCK = 512
# the planned GPU answers the techniques' capability checks as an Ampere-or-newer part does
PLANNED_CAPABILITY = (9, 0)

# aten/src/ATen/autocast_mode.cpp: ops CUDA's autocast keeps in fp32 where CPU's does not
# (lower-precision lists agree for this model's ops: mm, addmm, bmm, linear, matmul, sdpa)
CUDA_FP32_OUTPUT = ("softmax.int", "log_softmax.int")  # fp32_set_opt_dtype: fp32 result, no input copy
CUDA_FP32 = ("layer_norm", "native_layer_norm", "group_norm")  # fp32: inputs cast up
CPU_ONLY_FP32 = ("cross_entropy_loss",)  # CPU casts the logits up front; CUDA decomposes first

CUDA_MODEL = (
    "CUDA's autocast op policy (softmax, log_softmax and layer_norm in fp32; cross-entropy not cast whole)",
    "the caching allocator's 512-byte block rounding (the peak predicted is the allocated peak)",
    "torch.optim's CUDA default of foreach kernels (whole-model temporaries in the optimizer step)",
    "the technique's capability checks answered as an Ampere-or-newer GPU",
    "8-bit optimizer states at their real size (uint8 plus per-block absmax)",
    "SDPA's fused kernel as the CPU's fake flash kernel (output + log-sum-exp, nothing T x T)",
)
NOT_MODELLED = (
    "the CUDA context and cuBLAS / cuDNN workspaces (outside the allocator's count; maxbatch adds a headroom)",
    "reserved memory: the allocator's 2 / 20 MiB segments and fragmentation above the allocated peak",
    "kernel-internal scratch (flash backward's fp32 dq accumulator: B x T x d x 4 bytes per layer, transient)",
)


class NotModelled(ValueError):
    """The planner cannot predict this technique's memory; str(self) says why."""


@dataclasses.dataclass
class Plan:
    peak_mib: float
    breakdown: dict  # params, grads, optimizer, activations, temporaries (MiB) at the peak
    record: dict  # what ran, in results.csv's terms (utils.techniques.Run.record)
    attention: str  # the attention kernel CUDA would run
    n_params: int
    flops_per_token: int


def breakdown_mib(snapshot):
    """A MemTracker device snapshot (bytes by reference type) -> the suite's five parts, MiB.
    Buffers count with parameters; 'Other' (external tensors: the batch) with temporaries."""
    kinds = {str(k.value) if hasattr(k, "value") else str(k): v for k, v in snapshot.items()}
    parts = {
        "params": kinds.get("Parameter", 0) + kinds.get("Buffer", 0),
        "grads": kinds.get("Gradient", 0),
        "optimizer": kinds.get("Optstate", 0),
        "activations": kinds.get("Activation", 0),
        "temporaries": kinds.get("Temp", 0) + kinds.get("Other", 0),
    }
    return {name: round(value / MIB, 1) for name, value in parts.items()}


@contextlib.contextmanager
def cuda_rounding():
    """MemTracker rounds to 512-byte blocks only for tensors on a CUDA device: do so here."""

    def consumed(info):
        return math.ceil(info.size * info.element_size / BLOCK) * BLOCK

    with mock.patch.object(mem_tracker._WeakRefInfo, "_calculate_mem_consumed", consumed):
        yield


@contextlib.contextmanager
def cuda_autocast_policy():
    """Give CPU autocast CUDA's op policy where the two differ (kernels at AutocastCPU)."""
    lib = torch.library.Library("aten", "IMPL")
    below = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)

    def fp32_output(op):
        def kernel(x, dim, dtype=None):
            with torch._C._ExcludeDispatchKeyGuard(below):
                if dtype is None and x.is_floating_point():
                    dtype = torch.float32
                return op(x, dim, dtype)

        return kernel

    def fp32_inputs(op):
        def up(value):
            low = isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16)
            return value.float() if low else value

        def kernel(*args, **kwargs):
            with torch._C._ExcludeDispatchKeyGuard(below):
                return op(*(up(a) for a in args), **{k: up(v) for k, v in kwargs.items()})

        return kernel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "overriding a previously registered kernel": that is the point
        for name in CUDA_FP32_OUTPUT:
            lib.impl(name, fp32_output(_op(name)), "AutocastCPU")
        for name in CUDA_FP32:
            lib.impl(name, fp32_inputs(_op(name)), "AutocastCPU")
        for name in CPU_ONLY_FP32:
            lib.impl(name, torch.library.fallthrough_kernel, "AutocastCPU")
    try:
        yield
    finally:
        lib._destroy()


def _op(name):
    packet, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, packet), overload or "default")


@contextlib.contextmanager
def planned_gpu():
    """Answer the techniques' CUDA capability checks as the planned GPU would."""
    with (
        mock.patch.object(torch.cuda, "get_device_capability", lambda *a: PLANNED_CAPABILITY),
        mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: True),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # GradScaler("cuda") without CUDA: disabled, said once
        yield


@contextlib.contextmanager
def _real_bitsandbytes_qmaps():
    """bitsandbytes builds its 256-entry quantisation maps with data-dependent code at
    construction: build those few real floats outside the fake mode."""
    # its CPU backend warns at import about an optional 4-bit kernel package the planner never uses
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    try:
        from bitsandbytes.optim.optimizer import Optimizer8bit
    except ImportError:
        yield
        return
    fill = Optimizer8bit.fill_qmap

    def real_fill(self):
        with unset_fake_temporarily():
            fill(self)

    with mock.patch.object(Optimizer8bit, "fill_qmap", real_fill):
        yield


@contextlib.contextmanager
def one_iteration_per_forward(tracker, root):
    """MemTracker refuses a second forward of the root module in one iteration; gradient
    accumulation makes one per micro-batch. Reset its per-module stats (not its peak) before
    each: a global hook registered before the tracker's runs first."""

    def reset(module, args):
        if module is root and root in tracker.memory_tracking:
            tracker.reset_mod_stats()

    handle = torch.nn.modules.module.register_module_forward_pre_hook(reset)
    try:
        with tracker:
            yield
    finally:
        handle.remove()


def _cuda_optimizer_defaults(optimizer):
    # on CUDA torch.optim picks its foreach kernels when neither foreach nor fused is given;
    # fake tensors are not plain tensors, so pytorch would pick the per-tensor loop here
    if type(optimizer).__module__.startswith("torch.optim"):
        for group in optimizer.param_groups:
            if "foreach" in group and group["foreach"] is None and not group.get("fused"):
                group["foreach"] = True


def refuse_unmodelled(run):
    if run.compile_mode:
        raise NotModelled(
            "torch.compile: inductor's fusion and activation recomputation decide what is kept, "
            "and they do not run on fake tensors here; measure it on the GPU"
        )
    if run.step.graphed:
        raise NotModelled("CUDA graphs: the graph's private memory pool is not modelled; measure it on the GPU")


def _set_up(setup, cfg, model_cuda):
    """The technique applied to a model built on the (fake) CPU device; raises NotModelled."""
    def build(mlp="gelu"):
        return build_model(cfg.model, cfg.seq, mlp=mlp)

    run = Run(dataclasses.replace(cfg, device="cuda") if model_cuda else cfg, build(), build=build)
    try:
        with planned_gpu() if model_cuda else contextlib.nullcontext():
            setup(run)
    except Skip as why:
        raise NotModelled(f"the technique cannot run without a GPU here ({why})") from None
    refuse_unmodelled(run)
    return run


def check_modelled(setup, cfg):
    """Raise NotModelled now (the setup alone, on fake tensors: no step) if plan() would."""
    with FakeTensorMode(allow_non_fake_inputs=True), _real_bitsandbytes_qmaps():
        _set_up(setup, cfg, model_cuda=True)


def plan(setup, cfg, steps=STEPS, model_cuda=True):
    """Predict the peak CUDA memory of `setup` (a script's setup function) at cfg's
    model / batch / seq / accum. Raises NotModelled for what it cannot predict.
    model_cuda=False plans the step as this CPU runs it (to check the planner against a
    real run here)."""
    with FakeTensorMode(allow_non_fake_inputs=True), _real_bitsandbytes_qmaps():
        run = _set_up(setup, cfg, model_cuda)
        run.cfg = dataclasses.replace(cfg, device="cpu")  # the autocast the step enters: CPU's, with CUDA's policy
        if model_cuda:
            _cuda_optimizer_defaults(run.optimizer)
        micro = [(torch.zeros(cfg.batch, cfg.seq, dtype=torch.long),) * 2 for _ in range(run.accum)]  # token 0
        tracker = MemTracker()
        tracker.track_external(run.model, run.optimizer)
        cuda = (cuda_rounding(), cuda_autocast_policy()) if model_cuda else ()
        with contextlib.ExitStack() as stack:
            for context in (*cuda, one_iteration_per_forward(tracker, run.model)):
                stack.enter_context(context)
            for _ in range(steps):
                run.step(run, micro)
        snapshot = next(iter(tracker.get_tracker_snapshot("peak").values()))
    attention = run.model.attention
    return Plan(
        peak_mib=round(snapshot[mem_tracker._TOTAL_KEY] / MIB, 1),
        breakdown=breakdown_mib(snapshot),
        record=run.record(),
        # on CUDA in half precision SDPA dispatches to its flash kernel at these shapes
        attention="sdpa:flash" if attention == "sdpa" and run.autocast_dtype else attention,
        n_params=run.model.num_params(),
        flops_per_token=run.model.flops_per_token(cfg.seq),
    )
