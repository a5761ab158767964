"""N GPUs planned on one CPU: rank 0 of a fake process group.

`make plan NPROC=8 PARALLEL=fsdp` plans rank 0's step as `make fsdp` runs it (FSDP2's
`fully_shard` per block, then the root; DDP's wrapper for `ddp`), with PyTorch's fake
process group (torch.testing._internal.distributed.fake_pg: every collective returns at once,
with outputs of the right shapes) standing in for the other ranks: no GPUs, no processes.
FSDP2's device mesh is made before the fake tensor mode (its rank table is real data), and
handed to `fully_shard` as the default mesh it would have made itself. DDP's buckets are
modelled from what DDP allocated (`DDPBuckets`).
"""

import contextlib
from unittest import mock

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp._fully_shard import _fully_shard
from torch.nn.parallel import distributed
from torch.testing._internal.distributed.fake_pg import FakeStore

from utils import checks
from utils.plan.allocator import STREAM
from utils.techniques.parallel import KINDS

MAX_RANKS = 1024


def check_world(kind, nproc):
    """Refuse a world the planner does not plan: one line naming the problem."""
    if kind and kind not in KINDS:
        raise checks.BadInput(f"PARALLEL must be one of {', '.join(KINDS)} (or blank for one GPU), got {kind!r}")
    if nproc > MAX_RANKS:
        raise checks.BadInput(f"NPROC={nproc}: the planner plans up to {MAX_RANKS} ranks")
    if kind and nproc < 2:
        raise checks.BadInput(f"PARALLEL={kind} with NPROC={nproc}: one rank is not sharded or replicated; "
                              "plan NPROC=2 or more, or leave PARALLEL blank for one GPU")
    if nproc > 1 and not kind:
        raise checks.BadInput(f"NPROC={nproc} needs PARALLEL=ddp or PARALLEL=fsdp (how the ranks share the model)")


@contextlib.contextmanager
def fake_world(world):
    """Rank 0 of `world` (utils.techniques.parallel.World) in a fake process group; a no-op
    for one process."""
    if not world.kind:
        yield
        return
    if dist.is_initialized():
        raise RuntimeError("a process group is already initialised: plan outside torchrun")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world.size)
    try:
        mesh = init_device_mesh("cpu", (world.size,))
        with (
            mock.patch.object(_fully_shard, "_init_default_mesh", lambda *a, **k: mesh),
            # DDP's construction compares and broadcasts the weights' data across ranks: none here
            mock.patch.object(distributed, "_verify_param_shape_across_processes", lambda *a, **k: None),
            mock.patch.object(distributed, "_sync_module_states", lambda *a, **k: None),
        ):
            yield
    finally:
        dist.destroy_process_group()


class DDPBuckets:
    """DDP's gradient buckets, which the fake group cannot run: DDP is built for real (its
    reducer's first, single bucket: every gradient, flat, allocated at construction), then the
    step runs on the bare model and the buckets enter the trace where DDP allocates them
    (torch/nn/parallel/distributed.py and csrc/distributed/c10d/reducer.cpp, default
    gradient_as_bucket_view=False: a bucket is a flat copy of its gradients, kept): the first
    bucket from the start; before the second step's forward, `_rebuild_buckets` allocates the
    buckets of the execution order (the first `_DEFAULT_FIRST_BUCKET_BYTES`, then
    `bucket_cap_bytes` each, the sizes approximated as those caps over the same bytes) and
    then frees the first. The all-reduce itself works in place on a bucket: nothing more."""

    def __init__(self, total, cap):
        self.total, self.cap = total, cap

    @classmethod
    def take(cls, run):
        """The buckets of run's DDP wrapper, the wrapper removed from the step; None without DDP."""
        if run.cfg.world.kind != "ddp":
            return None
        data = run.train_model._get_ddp_logging_data()
        sizes = [int(size) for size in str(data["bucket_sizes"]).split(",") if size.strip()]
        run.train_model, run.no_sync = run.model, contextlib.nullcontext
        return cls(sum(sizes), int(data["bucket_cap_bytes"]))

    def rebuilt(self):
        sizes, left = [], self.total
        for cap in (dist._DEFAULT_FIRST_BUCKET_BYTES, *[self.cap] * (self.total // self.cap + 1)):
            if left <= 0:
                break
            sizes.append(min(cap, left))
            left -= sizes[-1]
        return sizes

    def before_step(self, step, events):
        """Put the buckets' allocations and frees into the trace before step `step` (0, 1, ...)."""
        if step == 0:
            events.append((("ddp", "first"), self.total))
        elif step == 1:
            events.extend((("ddp", i), size) for i, size in enumerate(self.rebuilt()))
            events.append((("ddp", "first"), -self.total))


@contextlib.contextmanager
def side_streams(tracker):
    """While FSDP2 works on one of its own streams (`device_handle.stream(s)`: on the fake world's
    CPU mesh, torch.cpu.stream), what it allocates is recorded in that stream's pool
    (utils/plan/allocator.py: a side stream's blocks serve only that stream on CUDA)."""
    real, names = torch.cpu.stream, {}

    @contextlib.contextmanager
    def stream(side):
        before = tracker.pool
        if side is not None and side is not torch.cpu.current_stream():
            tracker.pool = names.setdefault(id(side), f"{STREAM} {len(names) + 1}")
        try:
            with real(side):
                yield
        finally:
            tracker.pool = before

    with mock.patch.object(torch.cpu, "stream", stream):
        yield
