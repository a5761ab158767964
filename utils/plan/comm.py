"""N GPUs' collectives planned: what each costs on its link, and how much of it the step waits for.

The collectives come from the planned step itself: FSDP2's all-gathers and reduce-scatters are
c10d ops of the fake process group, recorded in order with their phase and size (timing.py's
COLLECTIVES); DDP's all-reduces are its gradient buckets (parallel.py's DDPBuckets: the reducer's
bucket sizes), each issued once backward has made its share of the gradients (the buckets fill
in backward's order; backward is taken to make gradient bytes at an even rate).

Cost: NCCL's own model of its algorithms (ring, tree) and protocols (LL, LL128, Simple), as
PyTorch's inductor ports it from nccl/src/graph/tuning.cc (torch/_inductor/comm_analysis.py,
`estimate_nccl_collective_runtime_impl`: a latency of base + steps x the per-hop latency of
NVLink, PCIe or the network, a bus bandwidth per link, the fastest pair chosen, as NCCL
chooses), asked about the planned GPUs rather than the ones present (none here): the generation
by compute capability, NVLink or PCIe between a node's GPUs (utils/devices.py, GPU.nvlink),
NPROC / NODES GPUs per node. Its bandwidths are NCCL's (src/graph/topo.h); between nodes one
NIC per GPU (InfiniBand HDR for Ampere, NDR for Hopper and newer).

Overlap: collectives run on their own streams beside the compute (FSDP2's all-gather and
reduce-scatter streams, DDP's communication stream), modelled as two queues:
- an all-gather is issued one ahead (FSDP2 prefetches the next block's: implicitly in forward,
  explicitly in backward, one block by default) and the compute after it waits for it;
- a reduce-scatter or an all-reduce is issued where the step reaches it; nothing waits for it
  until the optimizer step, which waits for them all.
The compute queue advances by each op's device time (timing.op_seconds). What the step waits is
exposed (it adds to the phase's time); the rest is hidden behind compute.
"""

import contextlib
import dataclasses
import itertools
from unittest import mock

from utils.plan.timing import PHASES, Op, op_seconds

BACKEND = "NCCL's tuning model (nccl/src/graph/tuning.cc) as torch/_inductor/comm_analysis.py ports it"


@dataclasses.dataclass(frozen=True)
class CommTime:
    exposed_ms: dict  # phase -> ms the compute waited for collectives
    total_ms: float  # every collective's own time, hidden or not
    count: int  # collectives per step


@contextlib.contextmanager
def _as_planned(gpu, per_node):
    """torch's NCCL model asked about `gpu` with `per_node` GPUs per node, whatever is present."""
    from torch._inductor import comm_analysis as nccl

    major = gpu.capability[0]
    kind = nccl.NVIDIA_GPU_TYPE
    generation = kind.BLACKWELL if major >= 10 else kind.HOPPER if major == 9 else \
        kind.AMPERE if major == 8 else kind.VOLTA
    with mock.patch.object(nccl, "get_gpu_type", lambda: generation), \
            mock.patch.object(nccl, "_has_nvlink", lambda: gpu.nvlink), \
            mock.patch.object(nccl.torch.cuda, "is_available", lambda: True), \
            mock.patch.object(nccl.torch.cuda, "device_count", lambda: per_node):
        yield nccl


def collective_seconds(op, gpu, ranks, nodes=1):
    """One collective's time on `ranks` GPUs of `gpu` over `nodes` nodes."""
    with _as_planned(gpu, ranks // nodes) as nccl:
        kind = {"all_gather": nccl.NCCL_COLL.ALL_GATHER, "reduce_scatter": nccl.NCCL_COLL.REDUCE_SCATTER,
                "all_reduce": nccl.NCCL_COLL.ALL_REDUCE}[op.name]
        return nccl.estimate_nccl_collective_runtime_impl(op.bytes, ranks, kind) / 1e3


def with_buckets(ops, bucket_bytes, gpu, tf32=False):
    """`ops` with DDP's bucket all-reduces put into backward where its gradients are made."""
    backward = [i for i, op in enumerate(ops) if op.phase == "backward"]
    total_s = sum(op_seconds(ops[i], gpu, tf32) for i in backward)
    total_bytes, cumulative = sum(bucket_bytes), list(itertools.accumulate(bucket_bytes))
    pending = [Op("all_reduce", "backward", "collective", 0, size, None, False) for size in bucket_bytes]
    out, done_s = [], 0.0
    for i, op in enumerate(ops):
        out.append(op)
        if op.phase != "backward":
            continue
        done_s += op_seconds(op, gpu, tf32)
        while pending and (done_s * total_bytes >= total_s * cumulative[-len(pending)] or i == backward[-1]):
            out.append(pending.pop(0))
    return out


def comm_time(ops, gpu, ranks, nodes=1, tf32=False):
    """The step's collectives (in `ops`, in order) on their queue beside the compute's: CommTime."""
    compute = comm = 0.0  # each queue's clock, s
    exposed, total, count = dict.fromkeys(PHASES, 0.0), 0.0, 0
    gathered_at, waited = None, False  # where the phase's last all-gather was reached; the optimizer has waited
    phase = None

    def wait(until, waiting):  # the compute of phase `waiting` idles until the collectives' queue reaches `until`
        nonlocal compute
        exposed[waiting] += max(until - compute, 0.0)
        compute = max(compute, until)

    for op in ops:
        if op.phase == "optimizer" and not waited:  # the step needs every gradient reduced
            wait(comm, "optimizer")
            waited = True
        if op.kind != "collective":
            compute += op_seconds(op, gpu, tf32)
            continue
        seconds = collective_seconds(op, gpu, ranks, nodes)
        total, count = total + seconds, count + 1
        if op.phase != phase:  # a phase's first all-gather is issued where it is reached
            phase, gathered_at = op.phase, None
        if op.name == "all_gather":  # prefetched one ahead; the compute after it needs it
            issued = compute if gathered_at is None else gathered_at
            gathered_at = compute
            comm = max(comm, issued) + seconds
            wait(comm, op.phase)
        else:
            comm = max(comm, compute) + seconds
    if not waited:
        wait(comm, "optimizer")
    return CommTime({phase: s * 1e3 for phase, s in exposed.items()}, total * 1e3, count)
