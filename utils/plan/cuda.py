"""The CUDA side of a plan made on a CPU: where CPU and CUDA kernels differ in what they
allocate, the CUDA behaviour is put in place for the fake step (each point in CUDA_MODEL),
and what is not modelled is said (NOT_MODELLED).
"""

import contextlib
import logging
import math
import sys
import warnings
from unittest import mock

import torch
from torch._subclasses.fake_tensor import unset_fake_temporarily
from torch.distributed._tools import mem_tracker

from utils.plan.compiled import APPROXIMATED as COMPILE_MODEL
from utils.techniques.optimizers import QUIET_BITSANDBYTES_LOGGER

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
    COMPILE_MODEL,
    "CUDA's autocast op policy (softmax, log_softmax and layer_norm in fp32; cross-entropy not cast whole)",
    "the caching allocator: 512-byte rounding, 2 / 20 MiB segments, best-fit reuse with splitting, cached frees, "
    "release and retry at the device's capacity (utils/plan/allocator.py), or expandable segments; FSDP2's side "
    "streams as pools of their own (its all-gather buffers, the sharded gradients its reduce-scatters write)",
    "cuBLAS workspaces (one per thread: forward's and backward's) and the CUDA context (utils/plan/device.py)",
    "torch.optim's CUDA default of foreach kernels (whole-model temporaries in the optimizer step)",
    "the technique's capability checks answered as the planned GPU's generation (GPU=)",
    "8-bit optimizer states at their real size (uint8 plus per-block absmax)",
    "SDPA's fused kernel as the CPU's fake flash kernel (output + log-sum-exp, nothing T x T)",
    "SDPA with dropout as CUDA's flash kernel runs it (the dropout inside the kernel, no mask), where the CPU "
    "falls back to its math kernel",
    "dropout as CUDA's fused kernel runs it (a bool mask kept for backward, where the CPU keeps the scaled noise "
    "at the input's dtype)",
    "a MoE block's grouped matmuls (transformers' experts) as one op at their FLOPs, their output at any float "
    "dtype as CUDA's kernel writes it (utils/models/moe.py)",
)
NOT_MODELLED = (
    "what cudagraph trees (COMPILE_MODE=reduce-overhead) keep beyond the step's tensors (input copies, older "
    "generations)",
    "the kernels a step loads into the CUDA context beyond the figure measured for the generation (Hopper's holds "
    "an eager fp32 step's; elsewhere the bare context); cuBLASLt and cuDNN workspaces",
    "allocator streams other than the default one and FSDP2's, and PYTORCH_CUDA_ALLOC_CONF options but "
    "expandable_segments",
    "kernel-internal scratch (flash backward's fp32 dq accumulator: B x T x d x 4 bytes per layer, transient)",
    "cuDNN's LSTM workspace and reserve space (an LSTM is planned as its CPU kernels allocate)",
    "grouped matmuls where CUDA's CUTLASS kernel does not apply (inputs not bf16, or a GPU without it: "
    "aten/src/ATen/native/cuda/GroupedBlas.cpp), and transformers' own for experts not in bf16 when compiled: "
    "each syncs the host and launches an mm per expert, timed here as one matmul",
)


@contextlib.contextmanager
def cuda_rounding():
    """MemTracker rounds to 512-byte blocks only for tensors on a CUDA device: do so here."""

    def consumed(info):
        return math.ceil(info.size * info.element_size / BLOCK) * BLOCK

    with mock.patch.object(mem_tracker._WeakRefInfo, "_calculate_mem_consumed", consumed):
        yield


@contextlib.contextmanager
def cuda_sdpa_dropout():
    """CUDA's flash (and efficient) SDPA kernels apply dropout inside the kernel, keeping only
    its random seed and offset; the CPU has no fused kernel with dropout and materialises the
    T x T probabilities and their mask. Plan the CUDA kernel: its allocations are those of the
    same call without dropout (a transformers model passes its attention dropout here)."""
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def fused(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, **kwargs):
        return sdpa(query, key, value, attn_mask=attn_mask, dropout_p=0.0, is_causal=is_causal, **kwargs)

    with mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", fused):
        yield


@contextlib.contextmanager
def cuda_dropout():
    """aten's dropout takes its fused kernel (native_dropout: the output and a bool mask) on
    CUDA only; on the CPU it multiplies by a noise tensor of the input's dtype, kept for
    backward: 4x the mask's bytes in fp32. Plan the CUDA kernel."""
    dropout = torch.nn.functional.dropout

    def fused(input, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1 and not inplace and input.numel():
            return torch.native_dropout(input, p, training)[0]
        return dropout(input, p, training, inplace)

    with mock.patch.object(torch.nn.functional, "dropout", fused):
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
def planned_gpu(capability=PLANNED_CAPABILITY):
    """Answer the techniques' CUDA capability checks as the planned GPU would (bf16 natively
    from compute capability 8.0, Ampere, on)."""
    with (
        mock.patch.object(torch.cuda, "get_device_capability", lambda *a: tuple(capability)),
        mock.patch.object(torch.cuda, "is_bf16_supported", lambda *a, **k: tuple(capability) >= (8, 0)),
        # GradScaler("cuda") on, as on the GPU: torch disables it where no CUDA is found, so a plan made
        # without a GPU left fp16's unscale and inf check out (and one made beside a GPU had them)
        mock.patch.object(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False),
    ):
        yield


@contextlib.contextmanager
def scaler_steps_without_infs():
    """GradScaler's optimizer step as on a step whose gradients are finite: it asks the host
    whether any were not (found_inf.item(), a value no fake tensor has); the planned step is not
    a skipped one."""

    def step(self, optimizer, optimizer_state, *args, **kwargs):
        return optimizer.step(*args, **kwargs)

    with mock.patch.object(torch.amp.GradScaler, "_maybe_opt_step", step):
        yield


@contextlib.contextmanager
def real_bitsandbytes_qmaps():
    """bitsandbytes builds its 256-entry quantisation maps with data-dependent code at
    construction: build those few real floats outside the fake mode."""
    # its CPU backend warns at import about an optional 4-bit kernel package the planner never uses
    logging.getLogger(QUIET_BITSANDBYTES_LOGGER).setLevel(logging.ERROR)
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


def real_torchao_qmaps():
    """torchao's 8-bit optimizer state builds its maps the same way, cached (lru_cache) at its first
    state: built here, outside the fake mode, once the optimizer is set up (torchao imported)."""
    states = sys.modules.get("torchao.optim.subclass_8bit")
    if states is not None:
        with unset_fake_temporarily():
            states.get_qmap_signed(), states.get_qmap_unsigned()


def cuda_optimizer_defaults(optimizer):
    # on CUDA torch.optim picks its foreach kernels when neither foreach nor fused is given;
    # fake tensors are not plain tensors, so pytorch would pick the per-tensor loop here
    if type(optimizer).__module__.startswith("torch.optim"):
        for group in optimizer.param_groups:
            if "foreach" in group and group["foreach"] is None and not group.get("fused"):
                group["foreach"] = True
