"""The measuring loop, written once: warm-up apart, honest step times, peak memory, and a
record of which attention kernel actually ran.

On CUDA each measured step sits between two CUDA events and nothing in the loop waits for
the GPU: no synchronize, no .item(). The host queues all steps, then one synchronize at the
end reads every event. On a CPU the ops run synchronously, so perf_counter around a step is
its time. Warm-up steps (kernel selection, allocator growth, torch.compile's tracing) are
timed too, with a sync per step, but kept in their own phase and never mixed in.
"""
import resource
import sys
import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

MIB = 2**20

# aten op SDPA dispatched to -> the kernel name results.csv records
SDPA_KERNELS = {
    "_scaled_dot_product_flash_attention": "sdpa:flash",
    "_scaled_dot_product_flash_attention_for_cpu": "sdpa:flash",
    "_scaled_dot_product_efficient_attention": "sdpa:efficient",
    "_scaled_dot_product_cudnn_attention": "sdpa:cudnn",
}


@dataclass
class Phase:
    name: str  # "warmup" or "measured"
    step_ms: list
    loss: list
    peak_alloc_mib: float = None  # CUDA only
    peak_reserved_mib: float = None  # CUDA only
    peak_rss_mib: float = None


class _AtenOps(TorchDispatchMode):
    """Collects the names of the aten ops that actually execute."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def attention_kernel(run):
    """Run the first block's attention once, at the training shape and precision, and
    name the kernel pytorch dispatched to (SDPA picks one per call; the model can't say)."""
    kind = run.model.attention
    if kind != "sdpa":
        return kind
    cfg = run.cfg
    x = torch.randn(cfg.batch, cfg.seq, run.model.config.n_embd, device=cfg.device, requires_grad=True)
    with _AtenOps() as ops, _autocast(run):
        run.model.blocks[0].attn(x)
    return next((SDPA_KERNELS[name] for name in ops.names if name in SDPA_KERNELS), "sdpa:math")


def _autocast(run):
    dtype = run.autocast_dtype
    return torch.autocast(run.cfg.device, dtype=dtype or torch.float32, enabled=dtype is not None)


def train_step(run, x, y):
    with _autocast(run):
        _, loss = run.train_model(x, y)
    loss.backward()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _peak_rss_mib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / MIB if sys.platform == "darwin" else rss / 1024


def _phase(name, step_ms, losses, cuda):
    phase = Phase(name, step_ms, torch.stack(losses).float().cpu().tolist(), peak_rss_mib=_peak_rss_mib())
    if cuda:
        phase.peak_alloc_mib = torch.cuda.max_memory_allocated() / MIB
        phase.peak_reserved_mib = torch.cuda.max_memory_reserved() / MIB
    return phase


def _host_timed(run, batches, steps, cuda):
    step_ms, losses = [], []
    for _ in range(steps):
        x, y = next(batches)
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses.append(train_step(run, x, y))
        if cuda:
            torch.cuda.synchronize()  # warm-up only: the step's time then includes its compile
        step_ms.append((time.perf_counter() - start) * 1e3)
    return step_ms, losses


def _event_timed(run, batches, steps):
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(steps)]
    losses = []
    for i in range(steps):
        x, y = next(batches)
        starts[i].record()
        losses.append(train_step(run, x, y))
        ends[i].record()
    torch.cuda.synchronize()  # note: the loop's only CPU-GPU sync point
    return [s.elapsed_time(e) for s, e in zip(starts, ends)], losses


def measure(run, batches, steps, warmup):
    """Train `warmup` then `steps` steps; return (warm-up Phase or None, measured Phase)."""
    cuda = run.cfg.device == "cuda"
    run.model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warm = None
    if warmup:
        warm = _phase("warmup", *_host_timed(run, batches, warmup, cuda), cuda)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()  # the measured phase's peak is its own
        measured = _event_timed(run, batches, steps)
    else:
        measured = _host_timed(run, batches, steps, cuda=False)
    return warm, _phase("measured", *measured, cuda)
