"""The measuring loop, written once: warm-up apart, honest step times split into parts,
the loop's own wall-clock, peak memory, and a record of which attention kernel ran.

Words: a run has two *phases*, warm-up and measured (the `phase` column); a step has three
*parts*, forward (+ loss), backward and optimizer (+ zero_grad). The step (utils/techniques/step.py)
marks each part's end; on CUDA the marks are CUDA events recorded in the stream and nothing
in the loop waits for the GPU: no synchronize, no .item(); one synchronize at the end reads
every event. On a CPU the ops run synchronously, so perf_counter at the marks is exact.
Warm-up steps (kernel selection, allocator growth, torch.compile's tracing, CUDA graph
capture) are timed too, with a sync at each mark, but kept in their own phase.

Beside the per-step times, each phase's wall-clock is taken from before its first step to
after the final sync: data, host overhead and gaps between steps included, so a loop whose
GPU time is fast but whose host is the bottleneck shows it (wall tokens/s < step tokens/s).

Memory (CUDA): each phase's peak allocated and reserved are training's own. An evaluation's
memory is left out (the peaks are read before it and reset after it); its time is left out of
the wall-clock, and it falls between one step's last mark and the next step's first, so it
enters no step time (the step after it starts on an idle GPU: a kernel launch's latency, a few
microseconds). A graphed step (cudagraphs, compile's reduce-overhead / max-autotune) allocates
its memory once, at capture, in the graph's private pool, and every replay reuses it without
asking the allocator: its measured peak is counted from the warm-up on, capture included.
"""

import resource
import sys
import time
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from utils.techniques.step import PARTS, autocast
from utils.units import MIB

gpu = torch.cuda  # the CUDA runtime calls the loop makes: a test swaps in a fake to run this path on a CPU


class NoProgress:
    """tqdm's interface, doing nothing: the bar where tqdm is not installed (a GPU box's own python)."""

    def __init__(self, **_):
        pass

    def update(self):
        pass

    def close(self):
        pass


try:
    from tqdm import tqdm as progress_bar
except ImportError:
    progress_bar = NoProgress

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
    parts_ms: dict  # part -> [ms per step], or None per step where the step was not split (CUDA graphs)
    loss: list
    skipped: list  # per step: the GradScaler skipped it (inf/nan grads); False without a scaler
    wall_ms: float  # the whole phase, gaps between steps and the final sync included
    peak_alloc_mib: float = None  # CUDA only
    peak_reserved_mib: float = None  # CUDA only
    device_total_mib: float = None  # CUDA only
    peak_rss_mib: float = None

    @property
    def forward_ms(self):
        return self.parts_ms["forward"]

    @property
    def backward_ms(self):
        return self.parts_ms["backward"]

    @property
    def optimizer_ms(self):
        return self.parts_ms["optimizer"]


class _AtenOps(TorchDispatchMode):
    """Collects the names of the aten ops that actually execute."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def attention_kernel(run):
    """Run one attention call at the training shape and precision and name the kernel
    pytorch dispatched to (SDPA picks one per call; the model can't say)."""
    cfg = run.cfg
    probe = run.model.attention_probe(cfg.batch, cfg.seq, cfg.device)
    if probe is None:
        return run.model.attention  # none (no attention), or own (a model with no attention switch)
    if run.model.attention != "sdpa":
        return run.model.attention
    with _AtenOps() as ops, autocast(run):
        probe()
    return next((SDPA_KERNELS[name] for name in ops.names if name in SDPA_KERNELS), "sdpa:math")


def _peak_rss_mib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / MIB if sys.platform == "darwin" else rss / 1024


class HostClock:
    """perf_counter marks. With sync (CUDA warm-up only) each mark first waits for the GPU."""

    def __init__(self, sync):
        self.sync, self.marks = sync, []

    def mark(self, label):
        if self.sync:
            gpu.synchronize()
        self.marks.append((label, time.perf_counter()))

    def read_ms(self):
        start = self.marks[0][1]
        return [(label, (t - start) * 1e3) for label, t in self.marks]


class EventClock:
    """CUDA events recorded in the stream: marks cost no host sync."""

    def __init__(self):
        self.marks = []

    def mark(self, label):
        event = gpu.Event(enable_timing=True)
        event.record()
        self.marks.append((label, event))

    def read_ms(self):
        gpu.synchronize()  # note: the measured loop's only CPU-GPU sync point (with evaluations')
        start = self.marks[0][1]
        return [(label, start.elapsed_time(event)) for label, event in self.marks]


def split_steps(marks):
    """[(label, ms)] with a "start" mark opening each step -> (step_ms, {part: [ms or None]}).
    A part's time is the sum of the intervals that end in its mark (ACCUM micro-batches
    give several forward and backward intervals); a step with no such mark has None."""
    steps = []
    for label, ms in marks:
        if label == "start":
            steps.append([])
        steps[-1].append((label, ms))
    step_ms, parts = [], {part: [] for part in PARTS}
    for step in steps:
        step_ms.append(step[-1][1] - step[0][1])
        for part in PARTS:
            spans = [end - begin for (_, begin), (label, end) in zip(step, step[1:]) if label == part]
            parts[part].append(sum(spans) if spans else None)
    return step_ms, parts


class Peaks:
    """The CUDA allocator's peaks over training only: read before each evaluation, reset after
    it, so what an evaluation holds is never counted; on a CPU it reads nothing."""

    def __init__(self, cuda):
        self.cuda, self.allocated, self.reserved = cuda, 0, 0
        self.reset()

    def reset(self):
        if self.cuda:
            gpu.reset_peak_memory_stats()

    def read(self):
        if self.cuda:
            self.allocated = max(self.allocated, gpu.max_memory_allocated())
            self.reserved = max(self.reserved, gpu.max_memory_reserved())

    def into(self, phase):
        if self.cuda:
            self.read()
            phase.peak_alloc_mib, phase.peak_reserved_mib = self.allocated / MIB, self.reserved / MIB
            free, total = gpu.mem_get_info()
            phase.device_total_mib = (total - free) / MIB  # context + reserved (+ any other process): nvidia-smi's


def _timed_steps(run, batches, steps, clock, name, peaks, evaluator=None, trained_before_ms=0.0):
    losses, skipped = [], []
    progress = progress_bar(total=steps, desc=f"{run.cfg.technique} {name}", leave=False,
                            disable=not sys.stderr.isatty())
    wall_start = time.perf_counter()
    eval_ms = 0.0  # evaluations inside this phase: left out of its wall-clock
    for _ in range(steps):
        micro_batches = [next(batches) for _ in range(run.accum)]  # outside the timed region
        clock.mark("start")
        loss, skip = run.step(run, micro_batches, clock.mark)
        losses.append(loss)
        skipped.append(skip)
        progress.update()  # host-side counter only: no sync, no .item()
        if evaluator is not None and evaluator.due(loss):
            if peaks.cuda:
                gpu.synchronize()  # training so far has finished: the clock below is its wall-clock
            peaks.read()
            trained_ms = trained_before_ms + (time.perf_counter() - wall_start) * 1e3 - eval_ms
            eval_ms += evaluator.evaluate(trained_ms)
            peaks.reset()
    marks = clock.read_ms()
    loss_values = torch.stack(losses).float().cpu().tolist()
    wall_ms = (time.perf_counter() - wall_start) * 1e3 - eval_ms
    progress.close()
    step_ms, parts = split_steps(marks)
    phase = Phase(
        name,
        step_ms=step_ms,
        parts_ms=parts,
        loss=loss_values,
        skipped=[bool(s) for s in (torch.stack(skipped).cpu().tolist() if skipped[0] is not None else skipped)],
        wall_ms=wall_ms,
        peak_rss_mib=_peak_rss_mib(),
    )
    peaks.into(phase)
    return phase


def measure(run, batches, steps, warmup, evaluator=None):
    """Train `warmup` then `steps` steps; return (warm-up Phase or None, measured Phase).
    With an evaluator (utils/measure/evaluate.py), evaluate before the first step and whenever it is
    due, out of the step times, the phases' wall-clocks and their peaks."""
    cuda = run.cfg.device == "cuda"
    run.model.train()
    if evaluator is not None:
        evaluator.evaluate(0.0)  # the untrained model: where every curve starts
    peaks = Peaks(cuda)
    warm = None
    if warmup:
        # warm-up may sync at every mark: its times then hold compile and autotuning
        warm = _timed_steps(run, batches, warmup, HostClock(sync=cuda), "warmup", peaks, evaluator)
    if cuda:
        gpu.synchronize()
    if not run.graphed:
        peaks = Peaks(cuda)  # the measured phase's peak is its own; a graph's was allocated at capture
    clock = EventClock() if cuda else HostClock(sync=False)
    trained_ms = warm.wall_ms if warm else 0.0
    return warm, _timed_steps(run, batches, steps, clock, "measured", peaks, evaluator, trained_ms)


def one_step(run, batches):
    """An unmarked step (for the profiler)."""
    return run.step(run, [next(batches) for _ in range(run.accum)])
