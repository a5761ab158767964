"""Data parallel runs under torchrun: the process group, and the ranks' figures combined.

`make ddp` / `make fsdp` (utils/drivers/launch.py) start the technique's script under torchrun with
PARALLEL=ddp|fsdp; torchrun sets RANK, LOCAL_RANK and WORLD_SIZE. Every rank builds the same
seeded model and draws the same global batch of WORLD_SIZE x BATCH sequences, keeping its own
slice, so a run at world size N sees exactly the sequences a single process at BATCH x N
would: their losses can be compared step by step. NCCL on GPUs, gloo on CPUs. The wrapping
itself is a technique stage: utils/techniques/parallel.py.
"""

import gc
import os

import torch
import torch.distributed as dist

from utils import checks
from utils.techniques.parallel import World


def world_from_env(kind, device):
    """This rank of torchrun's world (RANK, LOCAL_RANK, WORLD_SIZE) for PARALLEL=`kind`, training on
    `device`."""
    if not kind:
        return World()
    if "RANK" not in os.environ:
        raise checks.BadInput(f"PARALLEL={kind} outside torchrun: make ddp / make fsdp train on NPROC processes; "
                              f"make plan PARALLEL={kind} NPROC=N plans one rank of N GPUs")
    return World(kind, int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"]), int(os.environ["WORLD_SIZE"]), device)


def start(world):
    """Join the process group (a no-op for a single process); returns the device to train on."""
    if not world.kind:
        return None
    if world.backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(world.backend)
    return f"cuda:{world.local_rank}" if world.backend == "nccl" else "cpu"


def stop(world):
    if world.kind and dist.is_initialized():
        gc.collect()  # the wrapped model's collectives' state is freed while the group is still there
        dist.barrier()  # no rank tears the group down while another still uses it
        dist.destroy_process_group()


def combine(phase, world):
    """The slowest rank's time per step, the mean loss and the largest peaks across ranks."""
    if not world.kind or phase is None:
        return phase
    every = [None] * world.size
    dist.all_gather_object(every, phase)  # note: after the timed steps, so outside every figure
    # each step: the slowest rank's time and parts (the others waited for it in the all-reduce)
    slowest = [max(range(world.size), key=lambda r, i=i: every[r].step_ms[i]) for i in range(len(phase.step_ms))]
    phase.step_ms = [every[r].step_ms[i] for i, r in enumerate(slowest)]
    phase.parts_ms = {part: [every[r].parts_ms[part][i] for i, r in enumerate(slowest)] for part in phase.parts_ms}
    phase.loss = [sum(losses) / world.size for losses in zip(*(p.loss for p in every))]
    phase.wall_ms = max(p.wall_ms for p in every)
    for name in ("peak_alloc_mib", "peak_reserved_mib", "device_total_mib", "peak_rss_mib"):
        values = [getattr(p, name) for p in every if getattr(p, name) is not None]
        setattr(phase, name, max(values) if values else None)
    return phase
