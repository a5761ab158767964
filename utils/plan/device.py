"""What the GPU would show for a planned step: allocated, reserved, and the device total.

- **allocated**: the tensors' peak (the fake step's, MemTracker), plus the cuBLAS workspaces
  (and DDP's gradient buckets), as the replay holds them;
- **reserved**: the caching allocator's segments at their peak, from the step's allocations
  and frees replayed in order (utils/plan/allocator.py);
- **device total**: reserved + the CUDA context (driver state and loaded kernels, outside the
  allocator): what nvidia-smi shows for the process, and what an OOM message counts against.

cuBLAS workspaces (aten/src/ATen/cuda/CublasHandlePool.cpp, `parseChosenWorkspaceSize`):
allocated through the caching allocator, one per (thread, stream) that runs a matmul, kept
for the process's life: 32 MiB on compute capability 9.x, 10.x and 12.x, else 4096 x 1024 x 2
+ 16 x 1024 x 8 bytes (8.1 MiB). A training step has two such threads: the one calling
forward and the autograd engine's device thread that runs backward
(torch/csrc/autograd/engine.cpp).

The CUDA context: torch sets CUDA_MODULE_LOADING=LAZY (since 1.13, pytorch/pytorch#86509)
where CUDA >= 11.7 supports it, so kernels load when first used. Figures and sources below;
where a generation has no measured figure the plan says what it assumed. The kernels a
training step loads on top of the bare context are counted only where the measured figure holds them.
"""

import dataclasses

from utils import checks, devices
from utils.devices import generation
from utils.plan import allocator
from utils.units import GIB, MIB

# (MiB, source): the context as measured (nvidia-smi or cudaMemGetInfo's total - free), bare or
# with the kernels a training step loaded into it, as each source says
CONTEXT_MEASURED = {
    ("hopper", "lazy"): (751, "measured by make gpu_check on an NVIDIA H200 (driver 580.159.04, torch "
                              "2.11+cu130, 2026-12-04): device total - peak reserved after GPT-2's eager fp32 "
                              "step, the kernels it loaded included (cuDNN attention's +16 MiB, a CUDA graph's +72)"),
    ("ada", "lazy"): (426, "unsloth-zoo PR #1053: nvidia-smi 426 MiB after torch.cuda.mem_get_info, "
                           "RTX 6000 Ada, torch 2.10+cu130"),
}
# where no generation's figure is measured: what PyTorch's developers state
CONTEXT_STATED = {
    "lazy": (381, "pytorch/pytorch#109888: 'around 400MB if CUDA >= 11.7 is used and lazy module loading "
                  "enabled' (400 MB = 381 MiB)"),
    "eager": (636, "pytorch/pytorch#86509: cudaMemGetInfo's total - free 666,632,192 bytes with "
                   "CUDA_MODULE_LOADING=DEFAULT (a 6.4 MB tensor on the device)"),
}
def context(gpu, loading):
    """(MiB, source, assumed?) of the CUDA context on `gpu` with this module loading."""
    measured = CONTEXT_MEASURED.get((generation(gpu), loading))
    if measured:
        return (*measured, False)
    lazy = CONTEXT_MEASURED.get((generation(gpu), "lazy"))
    if loading == "eager" and lazy and lazy[0] > CONTEXT_STATED["eager"][0]:  # eager loads every kernel at start
        return lazy[0], f"at least the lazy figure measured: {lazy[1]}", True
    return (*CONTEXT_STATED[loading], True)


def cublas_workspaces(gpu):
    """Bytes of each cuBLAS workspace a training step allocates (forward's thread, backward's)."""
    each = 4096 * 8 * 1024 if gpu.capability[0] in (9, 10, 12) else 4096 * 1024 * 2 + 16 * 1024 * 8
    return (each, each)


@dataclasses.dataclass
class DeviceMemory:
    gpu: str  # the GPU's name
    allocated_mib: float
    reserved_mib: float  # on this GPU (after any retries); where it does not fit: what it would need
    context_mib: float
    context_source: str
    context_assumed: bool
    total_mib: float  # reserved + context + the unified memory resident (what room allows)
    retries: int  # cache releases after a failed cudaMalloc, in the planned steps
    steady_retries: int  # of them, in the last planned step: each step's once the cache has settled
    fits: bool
    unified_mib: float = 0.0  # unified memory outside the allocator, resident while the GPU has room

    @property
    def note(self):
        assumed = " (assumed: no measured figure for this generation)" if self.context_assumed else ""
        return f"CUDA context {self.context_mib:,.0f} MiB{assumed}: {self.context_source}"


def free_mib(replayed, context_mib, gpu):
    """What the GPU has left beside the allocator's peak reserved and the context, MiB (none if over)."""
    return max(gpu.memory_gib * GIB / MIB - replayed.peak_reserved / MIB - context_mib, 0.0)


def _replayed(plan, target, capacity):
    """The plan's trace through the allocator of `target` (its mode and cuBLAS workspaces), `capacity` bytes."""
    return allocator.replay(plan.events, capacity, target.allocator, cublas_workspaces(target.gpu))


def runs_within(plan, target, mib):
    """Whether the planned step runs in `mib` of the GPU's memory, its CUDA context included: the allocator
    replayed with that much, releasing its cache where it must (as at the device's capacity)."""
    return _replayed(plan, target, (mib - context(target.gpu, target.loading)[0]) * MIB).oom_at is None


def least_mib(plan, target, resolution_mib=64):
    """The least memory (MiB, the CUDA context included) the planned step runs in, to `resolution_mib`: the
    allocator replayed with less and less (runs_within), bisected between its allocated peak and the GPU's memory.
    For a plan whose reserved memory reached the GPU's (retries): what it needs, where reserved is what it had."""
    low = plan.memory.allocated_mib + plan.memory.context_mib  # below it nothing runs
    high = target.gpu.memory_gib * GIB / MIB  # it runs there (plan.memory.fits)
    while high - low > resolution_mib:
        middle = (low + high) / 2
        low, high = (low, middle) if runs_within(plan, target, middle) else (middle, high)
    return high


def device_memory(plan, target):
    """Replay a plan's trace (utils.plan.planner.Plan) on `target` (utils.plan.config.Target):
    its GPU, allocator mode and module loading."""
    gpu, mode = target.gpu, target.allocator
    if mode not in devices.ALLOCATOR_MODES:
        raise checks.BadInput(f"ALLOCATOR must be one of {', '.join(devices.ALLOCATOR_MODES)}, got {mode!r}")
    if target.loading not in devices.MODULE_LOADINGS:
        raise checks.BadInput(f"MODULE_LOADING must be one of {', '.join(devices.MODULE_LOADINGS)}, got "
                              f"{target.loading!r}")
    context_mib, source, assumed = context(gpu, target.loading)
    # unified memory is resident while the GPU has room beside the allocator's pools and the context;
    # the driver pages the rest to host memory (where nvidia-smi does not see it)
    unified_mib = plan.unified_bytes / MIB
    on_gpu = _replayed(plan, target, gpu.memory_gib * GIB - context_mib * MIB)
    fits = on_gpu.oom_at is None
    needed = on_gpu if fits else _replayed(plan, target, None)
    return DeviceMemory(
        gpu=gpu.name, allocated_mib=needed.peak_allocated / MIB,
        reserved_mib=needed.peak_reserved / MIB, context_mib=context_mib, context_source=source,
        context_assumed=assumed, retries=on_gpu.retries,
        steady_retries=sum(at >= plan.last_step_at for at in on_gpu.retried_at), fits=fits, unified_mib=unified_mib,
        total_mib=needed.peak_reserved / MIB + context_mib + min(unified_mib, free_mib(needed, context_mib, gpu)),
    )
