"""Selective activation checkpointing: which ops of a checkpointed block keep their output for
backward, and which backward recomputes.

The policy is torchtitan's per-op one, the one its Llama 3.1 8B benchmarks ran
(torchtitan/models/llama3/infra/parallelize.py, `_apply_ac_to_transformer_block`, activation
checkpointing mode "selective", option "op"): in each block, attention's output and every other
matmul's output are saved; everything else (norms, activations, residual adds, the other
matmuls) is recomputed. Saving attention spares its quadratic recompute; halving the matmuls
saves a share of their memory for a share of their FLOPs. PyTorch applies the policy op by op
(torch.utils.checkpoint.create_selective_checkpoint_contexts).
"""

import collections
import functools

import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

aten = torch.ops.aten
# a Linear with a bias dispatches addmm (the suite's GPT), without one mm (Llama)
MATMULS = {aten.mm.default, aten.addmm.default}
ATTENTION = {aten._scaled_dot_product_flash_attention.default, aten._scaled_dot_product_efficient_attention.default,
             aten._scaled_dot_product_cudnn_attention.default,
             aten._scaled_dot_product_flash_attention_for_cpu.default}


def _policy(counts, ctx, func, *args, **kwargs):
    if func in MATMULS:
        # counted apart in forward and in the recompute, so that both make the same choices
        mode = "recompute" if ctx.is_recompute else "forward"
        counts[mode] += 1
        return CheckpointPolicy.MUST_SAVE if counts[mode] % 2 else CheckpointPolicy.PREFER_RECOMPUTE
    return CheckpointPolicy.MUST_SAVE if func in ATTENTION else CheckpointPolicy.PREFER_RECOMPUTE


def contexts():
    """The forward and recompute contexts of one checkpointed call (a block's): its own counts."""
    return create_selective_checkpoint_contexts(functools.partial(_policy, collections.Counter()))
