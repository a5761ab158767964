"""How fast on a GPU you don't have: a roofline over the fake step's own ops.

Every aten op of the planned step (the last of its steps: the steady state) is recorded with
its FLOPs (PyTorch's flop counter registry, torch/utils/flop_counter.py: matmuls, convolutions,
attention) and the bytes it moves (its tensor inputs and outputs at their dtypes; an in-place
op reads and writes what it mutates; views move nothing). Each op then takes
max(FLOPs / achievable compute, bytes / achievable bandwidth) on the GPU: the roofline
(Williams, Waterman and Patterson, CACM 2009), as PyTorch's RuntimeEstimator's roofline mode
does (torch/distributed/_tools/runtime_estimator.py, learnt from, not used: it asserts CUDA).
The host must also issue every kernel: a phase takes the longer of its GPU time and its
launch time (ops x per-op overhead), so small kernels are launch-bound.

Technique effects come out of the trace, not a table: bf16 changes the ops' dtypes (the peak
used and the bytes), flash replaces the T x T ops by one attention op, fused AdamW and foreach
change the optimizer's ops, checkpointing repeats the forward ops it recomputes, CUDA graphs
launch the whole step at once. A compiled graph's ops are inductor's kernels, lowered and
scheduled by inductor itself (utils/plan/scheduled.py: scheduled_kernels), each with the bytes its
scheduler counts it to move.

Efficiency is declared, never fitted to the rows it is judged on (each constant's source
beside it).
"""

import dataclasses

import torch
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

from utils.devices import by_key
from utils.plan import h100
from utils.plan.cudagraphs import STEP

# a large bf16 matmul measures ~798 of the H100 SXM's 989 dense TFLOP/s (utils/plan/h100.py):
# the fraction of peak a matmul reaches
MATMUL_EFFICIENCY = h100.MATMUL_BF16_TFLOPS / by_key("h100-sxm").peaks["bf16"]
# FlashAttention-2 (Dao, 2023, section 4): 50-73% of the A100's peak in its forward and
# backward; on the H100 it reaches ~335 of 989 TFLOP/s (it does not use Hopper's new units)
ATTENTION_EFFICIENCY = {9: 335 / 989.4, 8: 0.5}
# the fraction of datasheet bandwidth the step's memory-bound kernels sustain, calibrated on
# one declared configuration: the reference table's "bf16 + SDPA flash" row (GPT-2 124M, B=16,
# T=1024, H100 SXM, 48.2 ms): the value at which this roofline gives that row's time (0.698,
# rounded). That row is then no evidence (plan_check marks it); every other row is held out.
# (Streaming copy/triad benchmarks reach ~90% on HBM parts; PyTorch's elementwise, reduction
# and normalisation kernels less, which is what this measures.)
CALIBRATION = h100.row("bf16 + SDPA flash")[0]  # the row's label: plan_check keeps it out of every bar
MEMORY_EFFICIENCY = 0.70
# the fraction of the host link's rate a pinned copy reaches: NVIDIA's CUDA FAQ ("What are the peak transfer
# rates between the CPU and GPU?"): up to 6.0 GB/s measured on PCIe 2.0 x16, whose peak is 8 GB/s each way
HOST_LINK_EFFICIENCY = 6.0 / 8.0
# host time per op PyTorch eager dispatches (the dispatcher, Python and the launch: "about 10 us
# per op", He, "Making Deep Learning Go Brrrr From First Principles", 2022), per kernel a
# compiled graph launches (inductor's wrapper code: the launch itself, ~4 us, same source)
EAGER_OP_US = 10.0
COMPILED_KERNEL_US = 4.0
PHASES = ("forward", "backward", "optimizer")
# the fused attention kernels, forward and backward (the CPU's flash op stands for CUDA's: cuda.py)
ATTENTION_OPS = tuple(f"_scaled_dot_product_{kind}{suffix}" for kind in ("flash_attention", "efficient_attention",
                                                                         "cudnn_attention", "flash_attention_for_cpu")
                      for suffix in ("", "_backward"))
FREE_OPS = {"detach", "alias", "lift_fresh", "_local_scalar_dense", "_unsafe_view", "item"}


def is_view(target):
    """Whether an op (or an FX node's target) returns an alias of its input: no kernel, no memory."""
    schema = getattr(target, "_schema", None)
    return schema is not None and not schema.is_mutable and any(r.alias_info for r in schema.returns)


def _tensors(tree):
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _nbytes(t):
    return t.numel() * t.element_size()


@dataclasses.dataclass
class Op:
    name: str
    phase: str
    kind: str  # matmul, attention, memory (bandwidth-bound), collective or host link (a copy to or from the host)
    flops: int
    bytes: int
    dtype: torch.dtype
    compiled: bool  # launched by a compiled graph
    shape: tuple = ()  # of its largest tensor
    replayed: bool = False  # by a CUDA graph (a graph compiled in reduce-overhead mode): no launch from the host


class OpRecorder:
    """PeakTracker's on_op: every op of the step, its FLOPs and bytes. `in_graph`: set while a
    compiled graph runs, whose kernels (inductor's) its runner records instead of its ops."""

    def __init__(self):
        self.ops, self.in_graph = [], False

    def host_copy(self, tensor, phase):
        """A copy of `tensor` over the host link (offloaded activations: to the host in forward,
        back in backward), which the planned step makes without an op of its own."""
        self.ops.append(Op("copy (host link)", phase, "host link", 0, _nbytes(tensor), tensor.dtype, False,
                           tuple(tensor.shape)))

    def __call__(self, func, args, kwargs, out, phase):
        if self.in_graph:
            return  # a compiled graph's ops: its kernels, as inductor schedules them, were recorded instead
        name = func._overloadpacket.__name__
        if name in FREE_OPS or is_view(func):
            return
        if name in COLLECTIVES:  # what the ranks exchange: timed by utils/plan/comm.py, not the roofline
            self.ops.append(collective_op(COLLECTIVES[name], phase, args))
            return
        inputs = list({id(t): t for t in _tensors((args, kwargs))}.values())
        outputs = _tensors(out)
        written_args = [a for a, arg in zip(args, func._schema.arguments) if arg.alias_info and arg.alias_info.is_write]
        mutated = _tensors(written_args)
        if not outputs and not mutated:
            return  # a query of metadata (device, size): no kernel
        written = sum(_nbytes(t) for t in outputs if all(t is not m for m in mutated))
        written += sum(_nbytes(t) for t in mutated)
        read = sum(_nbytes(t) for t in inputs)
        kind = "attention" if name in ATTENTION_OPS else None
        flops = attention_flops(func, args, kwargs) if kind else counted_flops(func, args, kwargs, out)
        kind = kind or ("matmul" if flops else "memory")
        dtype = inputs[0].dtype if inputs else (outputs[0].dtype if outputs else torch.float32)
        largest = max(inputs + outputs, key=_nbytes).shape if inputs or outputs else ()
        self.ops.append(Op(name, phase, kind, flops, read + written, dtype, False, tuple(largest)))


# c10d's collectives (as the process group's ops reach the dispatcher) -> NCCL's collective
COLLECTIVES = {"_allgather_base_": "all_gather", "allgather_into_tensor_coalesced_": "all_gather",
               "_reduce_scatter_base_": "reduce_scatter", "reduce_scatter_tensor_coalesced_": "reduce_scatter",
               "allreduce_": "all_reduce", "allreduce_coalesced_": "all_reduce"}


def collective_op(kind, phase, args):
    """A collective as an Op: its bytes are NCCL's nBytes, the whole exchanged size (an all-gather's
    output, a reduce-scatter's input, an all-reduce's tensors; nccl/src/enqueue.cc multiplies a
    per-rank count by the ranks), here the larger of its first two tensor arguments (lists summed)."""
    sides = [sum(_nbytes(t) for t in _tensors(arg)) for arg in args[:2]]
    tensors = _tensors(args[:2])
    return Op(kind, phase, "collective", 0, max(sides), tensors[0].dtype if tensors else torch.float32, False)


def counted_flops(func, args, kwargs, out):
    count = flop_registry.get(func._overloadpacket)
    return count(*args, **kwargs, out_val=out) if count else 0


def attention_flops(func, args, kwargs):
    """A fused attention kernel's FLOPs (torch/utils/flop_counter.py's SDPA counts), halved
    when causal: the kernels skip the masked half (FlashAttention-2 counts them so too)."""
    backward = func._overloadpacket.__name__.endswith("_backward")
    shapes = [t.shape for t in args[:4 if backward else 3]]
    flops = sdpa_backward_flop_count(*shapes) if backward else sdpa_flop_count(*shapes)
    names = [a.name for a in func._schema.arguments]
    at = names.index("is_causal") if "is_causal" in names else len(args)
    causal = kwargs.get("is_causal", args[at] if at < len(args) else False)
    return flops // 2 if causal is True else flops


@dataclasses.dataclass
class StepTime:
    gpu: str
    ms: dict  # phase -> ms
    kernels: int
    bound: dict  # phase -> "GPU" or "host"
    tokens: int  # per step, this GPU's
    comm: object = None  # N GPUs: the collectives' time (utils/plan/comm.py's CommTime), its exposed part in ms

    @property
    def step_ms(self):
        return sum(self.ms.values())

    @property
    def tokens_per_s(self):
        return self.tokens / (self.step_ms / 1e3) if self.step_ms else 0.0


def _compute_tflops(op, gpu, tf32):
    if op.dtype in (torch.bfloat16, torch.float16):
        # each half precision at its own peak where the device has one (a T4: fp16 only; a CPU: both measured)
        own, other = ("fp16", "bf16") if op.dtype == torch.float16 else ("bf16", "fp16")
        peak = gpu.peaks.get(own) or gpu.peaks.get(other)
    else:
        peak = gpu.peaks.get("tf32" if tf32 else "fp32") or gpu.peaks["fp32"]
    if op.kind == "attention":
        return peak * ATTENTION_EFFICIENCY.get(gpu.capability[0], ATTENTION_EFFICIENCY[8])
    return peak * MATMUL_EFFICIENCY


def op_seconds(op, gpu, tf32=False):
    """The roofline time of one op on `gpu` (a utils.devices.GPU); a collective's is its link's."""
    if op.kind == "collective":
        return 0.0
    if op.kind == "host link":
        return op.bytes / (gpu.host_link_gbs * 1e9 * HOST_LINK_EFFICIENCY)
    compute = op.flops / (_compute_tflops(op, gpu, tf32) * 1e12) if op.flops else 0.0
    memory = op.bytes / (gpu.bandwidth_tbs * 1e12 * MEMORY_EFFICIENCY)
    return max(compute, memory)


def gpu_ms_by_kind(ops, gpu, tf32=False):
    """The GPU's roofline time of a step's ops by kind ({matmul, attention, memory, host link: ms},
    collectives apart) and of its memory-bound ops those in fp32 ("memory fp32"): where compile's
    fusion and lower precision can save."""
    ms = dict.fromkeys(("matmul", "attention", "memory", "memory fp32", "host link"), 0.0)
    for op in ops:
        if op.kind in ("matmul", "attention", "memory", "host link"):
            op_ms = op_seconds(op, gpu, tf32) * 1e3
            ms[op.kind] += op_ms
            if op.kind == "memory" and op.dtype == torch.float32:
                ms["memory fp32"] += op_ms
    return ms


@dataclasses.dataclass(frozen=True)
class SyncedSteps:
    """An optimizer whose step waits for the GPU after every parameter: bitsandbytes'
    `Optimizer8bit.step` calls `sync_gpu(p)` (torch.cuda.synchronize) after each parameter's update
    (bitsandbytes/optim/optimizer.py, 0.50.2; Lion and the 32-bit states included), so the host's
    work for the next parameter and the GPU's kernels never overlap: the phase takes their sum."""

    params: int  # parameters stepped one by one, each followed by a synchronisation
    host_us: float  # the host's time per parameter (the optimizer's Python loop and its launches)


def _host_us(op, graphed, eager_op_us):
    """The host's time to issue one op: none where a CUDA graph replays it (`graphed == STEP`: the
    whole step, utils/plan/cudagraphs.py; or the op's own graph, reduce-overhead's)."""
    if graphed == STEP or op.replayed:
        return 0.0
    return COMPILED_KERNEL_US if op.compiled else eager_op_us


def step_time(ops, gpu, tokens, tf32=False, graphed=None, serial=False, eager_op_us=EAGER_OP_US, synced=None,
              comm=None, copies_overlap=False):
    """Per phase: the longer of the GPU's roofline time and the host's launch time (none for
    what replays as CUDA graphs: `graphed`, see _host_us); `serial`: a CPU, which runs each op
    where it dispatches it, takes both. `tokens`: what one step trains on this device;
    `eager_op_us`: the host's time per eager op, or per phase {phase: us} (measured where the host
    is this machine: machine.host_op_us); `synced`: a SyncedSteps optimizer, whose phase is the
    GPU's time plus the host's, per parameter; `comm`: the collectives' (utils/plan/comm.py's
    CommTime), whose exposed time adds to each phase's; `copies_overlap`: the host link's copies run
    beside the phase's kernels (side streams), else after them (the compute stream)."""
    ms, bound = {}, {}
    for phase in PHASES:
        mine = [op for op in ops if op.phase == phase]
        link = sum(op_seconds(op, gpu, tf32) for op in mine if op.kind == "host link") * 1e3
        device = sum(op_seconds(op, gpu, tf32) for op in mine if op.kind != "host link") * 1e3
        device = max(device, link) if copies_overlap else device + link
        op_us = eager_op_us.get(phase, EAGER_OP_US) if isinstance(eager_op_us, dict) else eager_op_us
        host = sum(_host_us(op, graphed, op_us) for op in mine) / 1e3
        if phase == "optimizer" and synced is not None:
            host = synced.params * synced.host_us / 1e3
            ms[phase] = device + host
        else:
            ms[phase] = device + host if serial else max(device, host)
        bound[phase] = "GPU" if device >= host else "host"
        if comm is not None:
            ms[phase] += comm.exposed_ms[phase]
    return StepTime(gpu.name, ms, len(ops), bound, tokens, comm)
