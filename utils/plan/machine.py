"""This machine, measured for the roofline (utils/plan/timing.py): its fp32 matmul rate and copy
bandwidth (a CPU as a device of the table, the planner's second check), its host time per eager op
(per phase, on a given step) and a synchronising optimizer's host time per parameter.
"""

import contextlib
import functools
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from utils.devices import GPU
from utils.plan.timing import EAGER_OP_US, MATMUL_EFFICIENCY, MEMORY_EFFICIENCY, PHASES, OpRecorder, op_seconds


def _best(fn, repeats=5):
    """The shortest of `repeats` timed calls, after one untimed: the machine's rate, not its noise."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class Recording(TorchDispatchMode):
    """Every op run under it, to an OpRecorder (as the planner's tracker does)."""

    def __init__(self, recorder):
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.recorder(func, args, kwargs or {}, out, "forward")
        return out


def host_op_us(step, device, repeats=5):
    """This machine's host time per eager op of each phase of `step` (a callable taking `mark`, as
    the suite's steps do, marking each part's end: one training step at a size where compute is a
    few microseconds, so that the step is nearly all dispatch: Python, modules, the dispatcher,
    autograd, the optimizer's loop, and on a CPU any kernel that is itself a chain of eager ops, as
    bitsandbytes' CPU backend is). Each phase's time (the shortest of `repeats`), less the roofline
    of its ops on `device` (this CPU: measured_cpu; the two add on a CPU), over the ops an
    OpRecorder counts in it (recorded once, apart): {phase: us per op}, as a plan counts its ops."""
    step(lambda part: None)  # the optimizer state exists from here on, as in a plan's steady state
    recorder, ops = OpRecorder(), {phase: [] for phase in PHASES}

    def collect(part):  # the ops recorded since the last mark are this part's
        ops[part] += recorder.ops
        recorder.ops = []

    with Recording(recorder):
        step(collect)
    best = dict.fromkeys(PHASES, float("inf"))
    for _ in range(repeats):
        marks = [("start", time.perf_counter())]
        step(lambda part, marks=marks: marks.append((part, time.perf_counter())))
        times = dict.fromkeys(PHASES, 0.0)
        for (_, before), (part, at) in zip(marks, marks[1:]):
            times[part] += at - before
        best = {p: min(best[p], times[p]) for p in PHASES}
    device_s = {phase: sum(op_seconds(op, device) for op in ops[phase]) for phase in PHASES}
    return {phase: max(best[phase] - device_s[phase], 0.0) / len(ops[phase]) * 1e6 for phase in PHASES if ops[phase]}


def synced_host_us(optimizer_class, kernels, numel=4096, params=32):
    """This machine's host time per parameter of a synchronising optimizer's step: its Python loop
    over `params` parameters of `numel` elements (bitsandbytes' 8-bit state starts at 4096, its
    min_8bit_size), timed (best of five, per parameter) with its update kernels doing nothing
    (`kernels`: contexts that make them no-ops where they are dispatched, so the Python and the
    dispatcher's call on the way to them are counted: a CPU's kernels are no stand-in for CUDA's),
    plus the launch of the one kernel each parameter's update is (EAGER_OP_US, assumed to cover the
    CUDA kernel's own Python too: its ctypes arguments and call, not measured here). The
    synchronisation's own latency is not counted: a lower bound. The planning machine's host
    stands in for the GPU box's."""
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(numel)) for _ in range(params)]
    for w in weights:
        w.grad = torch.randn(numel)
    optimizer = optimizer_class(weights)
    with contextlib.ExitStack() as stack:
        for patch in kernels:
            stack.enter_context(patch)
        optimizer.step()  # the state exists from here on
        loop_s = _best(optimizer.step)
    return loop_s / params * 1e6 + EAGER_OP_US


def _half_matmul_tflops(dtype, largest=1024, call_s=0.05):
    """This CPU's matmul rate in a half precision (make tune VERIFY ranks them here): native on some, where
    it is measured as fp32 is, at 1024^3; emulated on many, where a 1024^3 call takes seconds: there at the
    largest square size from 256 whose call stays near `call_s` (emulated bf16 on a 2-thread AMD EPYC: 1.4
    GFLOP/s at 256^3, 1.0 at 1024^3; either ranks it a hundredth of fp32's 190)."""
    def square(n):
        return functools.partial(torch.matmul, torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype))

    n = 256
    while n < largest and _best(square(n), repeats=1) * 8 <= call_s:  # the next size up is 8x the work
        n *= 2
    return 2 * n**3 / _best(square(n), repeats=20 if n == largest else 5) / 1e12


def measured_cpu(threads_note):
    """This CPU as a device of the table: its fp32, bf16 and fp16 matmul rates and copy bandwidth, measured
    (a 1024^3 fp32 matmul and a 256 MiB copy, best of twenty: a shared machine's rate dips for whole
    tenths of a second; the half precisions at _half_matmul_tflops's size), entered over the declared
    efficiencies so that the roofline uses the rates measured. A second check of the method, where it can
    run. Returns (the device, matmul TFLOP/s, copy TB/s)."""
    a = torch.randn(1024, 1024)
    matmul_tflops = 2 * 1024**3 / _best(lambda: a @ a, repeats=20) / 1e12
    half_tflops = {dtype: _half_matmul_tflops(getattr(torch, dtype)) for dtype in ("bfloat16", "float16")}
    src = torch.randn(2**26)  # written: untouched pages would be read as the shared zero page
    dst = torch.empty_like(src)
    copy_tbs = 2 * src.numel() * 4 / _best(lambda: dst.copy_(src), repeats=20) / 1e12  # read and write
    peaks = {"fp32": matmul_tflops / MATMUL_EFFICIENCY, "bf16": half_tflops["bfloat16"] / MATMUL_EFFICIENCY,
             "fp16": half_tflops["float16"] / MATMUL_EFFICIENCY}
    device = GPU("cpu", "", f"this CPU ({threads_note})", 0, (0, 0), peaks, copy_tbs / MEMORY_EFFICIENCY)
    return device, matmul_tflops, copy_tbs
