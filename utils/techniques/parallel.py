"""The parallel stage: DDP or FSDP2 (`fully_shard`) over the finished model, as torchtitan
applies them, and which rank of how many this process is.

Order (the "parallel" stage, between memory and optimizer): checkpointing wraps the blocks
first, then DDP wraps the model, or FSDP2 shards each block and then the root; the optimizer
is built over the (sharded) parameters after; compile traces the parallel model last.
Gradient accumulation synchronises once per optimizer step: every micro-batch but the last
runs under `run.no_sync` (DDP's `no_sync()`, FSDP2's `set_requires_gradient_sync(False)`).
"""

import contextlib
from dataclasses import dataclass

KINDS = ("ddp", "fsdp")


@dataclass(frozen=True)
class World:
    kind: str = ""  # "", ddp or fsdp
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: str = "cpu"  # what the ranks train on (DEVICE, resolved): it picks the backend

    @property
    def backend(self):
        # NCCL for ranks on GPUs, gloo for ranks on CPUs: by DEVICE, not by whether a GPU is visible
        return "" if not self.kind else ("nccl" if self.device == "cuda" else "gloo")


def wrap(run):
    """Wrap or shard run.model for data parallel training; set run.no_sync to match."""
    world = run.cfg.world
    if world.kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [world.local_rank] if world.backend == "nccl" else None
        ddp = DistributedDataParallel(run.model, device_ids=device_ids)
        run.train_model, run.no_sync = ddp, ddp.no_sync  # the DDP object's, also once compile wraps it
    elif world.kind == "fsdp":
        from torch.distributed.fsdp import fully_shard

        blocks, policy = run.model.blocks, block_precision(run)
        for i, block in enumerate(blocks):
            # one all-gather per block: only one block's weights whole at a time; the last block's stay whole
            # after forward, as backward needs them first (torchtitan's reshard policy; FSDP2 keeps the root's)
            fully_shard(block, reshard_after_forward=i < len(blocks) - 1, mp_policy=policy)
        fully_shard(run.model)
        run.no_sync = _fsdp_no_sync(run.model)
        if run.cfg.device != "cuda":  # gloo's ranks (the planner sets up a GPU's run on CUDA, its world on CPU)
            # gloo's reduce-scatter has summed where FSDP2 asked it to average in some torch
            # versions (pytorch/pytorch#162338; torch 2.13's gloo averages correctly): ask for
            # sums and let FSDP2 divide, whatever torch this is. make fsdp's loss check guards it
            run.model.set_force_sum_reduction_for_comms(True)


def block_precision(run):
    """FSDP2's MixedPrecisionPolicy for the blocks under a bf16 autocast over fp32 weights on GPUs:
    each block's weights all-gathered in bf16 (half fp32's bytes, and the copy autocast would cast
    per matmul is the gathered weight itself), its gradients reduce-scattered in fp32 into the fp32
    shards (torchtitan's policy, parallelisms/parallelize_llama.py). Unlike torchtitan's, the root's
    weights (embeddings, head) stay fp32 and the blocks' inputs are not cast, so the residual stream
    stays fp32 and the matmuls compute what one process under autocast does (each weight rounded to
    bf16 as autocast rounds it); the norms' weights differ: rounded to bf16 before CUDA's autocast
    runs the norm in fp32, their gradients rounded to bf16 before the fp32 reduction (make fsdp's
    loss check bounds the difference). Not under fp16, whose norm gradients could overflow in fp16
    where one process's are fp32 (the loss scale would then skip other steps), nor on CPUs, whose
    autocast runs layer_norm in the dtypes it is given and fails on an fp32 input with bf16 weights:
    there the default policy (everything fp32)."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from utils.techniques.stages import BF16_AUTOCAST

    if run.cfg.device != "cuda" or run.dtype != BF16_AUTOCAST:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False)


def _fsdp_no_sync(model):
    @contextlib.contextmanager
    def no_sync():
        # gradients accumulate unsharded until the micro-batch that syncs (the step's last)
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    return no_sync
