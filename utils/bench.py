"""The measuring loop, written once: warm-up apart, honest step times split into phases,
peak memory, and a record of which attention kernel actually ran.

A step is marked four times: start, forward (+ loss) done, backward done, optimizer step
(+ zero_grad) done. On CUDA the marks are CUDA events recorded in the stream and nothing in
the loop waits for the GPU: no synchronize, no .item(); one synchronize at the end reads
every event. On a CPU the ops run synchronously, so perf_counter at the marks is exact.
Warm-up steps (kernel selection, allocator growth, torch.compile's tracing) are timed too,
with a sync at each mark, but kept in their own phase and never mixed in.
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
    forward_ms: list
    backward_ms: list
    optimizer_ms: list
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


def train_step(run, x, y, mark=lambda: None):
    """One step; mark() is called as forward, backward and the optimizer step finish."""
    with _autocast(run):
        _, loss = run.train_model(x, y)
    mark()
    loss.backward()
    mark()
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    mark()
    return loss.detach()


def _peak_rss_mib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / MIB if sys.platform == "darwin" else rss / 1024


class HostClock:
    """perf_counter marks. With sync (CUDA warm-up only) each mark first waits for the GPU."""

    def __init__(self, sync):
        self.sync, self.marks = sync, []

    def mark(self):
        if self.sync:
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())

    def offsets_ms(self):
        return [(t - self.marks[0]) * 1e3 for t in self.marks]


class EventClock:
    """CUDA events recorded in the stream: marks cost no host sync."""

    def __init__(self):
        self.marks = []

    def mark(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        self.marks.append(event)

    def offsets_ms(self):
        torch.cuda.synchronize()  # note: the measured loop's only CPU-GPU sync point
        return [self.marks[0].elapsed_time(event) for event in self.marks]


def _timed_steps(run, batches, steps, clock, name, cuda):
    losses = []
    for _ in range(steps):
        x, y = next(batches)  # outside the timed region
        clock.mark()
        losses.append(train_step(run, x, y, clock.mark))
    t = clock.offsets_ms()  # four marks per step: start, forward, backward, optimizer done
    marks = [t[i : i + 4] for i in range(0, len(t), 4)]
    phase = Phase(
        name,
        step_ms=[m[3] - m[0] for m in marks],
        forward_ms=[m[1] - m[0] for m in marks],
        backward_ms=[m[2] - m[1] for m in marks],
        optimizer_ms=[m[3] - m[2] for m in marks],
        loss=torch.stack(losses).float().cpu().tolist(),
        peak_rss_mib=_peak_rss_mib(),
    )
    if cuda:
        phase.peak_alloc_mib = torch.cuda.max_memory_allocated() / MIB
        phase.peak_reserved_mib = torch.cuda.max_memory_reserved() / MIB
    return phase


def measure(run, batches, steps, warmup):
    """Train `warmup` then `steps` steps; return (warm-up Phase or None, measured Phase)."""
    cuda = run.cfg.device == "cuda"
    run.model.train()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warm = None
    if warmup:
        # warm-up may sync at every mark: its times then hold compile and autotuning
        warm = _timed_steps(run, batches, warmup, HostClock(sync=cuda), "warmup", cuda)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()  # the measured phase's peak is its own
    clock = EventClock() if cuda else HostClock(sync=False)
    return warm, _timed_steps(run, batches, steps, clock, "measured", cuda)
