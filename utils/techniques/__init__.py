"""Techniques: small functions that change a Run, applied in one fixed order of stages.

Job: everything a technique script may call (`from utils import techniques as t`), the run
state they change (run.py), the step the loop drives (step.py) and the parallel stage
(parallel.py). Which techniques exist is utils/catalog.py's table.
May import: torch, utils.models, utils.registry, utils.checks.

    1. architecture   gated_mlp (rebuild the model, same seed, before anything else)
    2. precision      strict_fp32, tf32, autocast_bf16, autocast_fp16, bf16_weights
    3. attention      flash_attention (the model starts with manual attention)
    4. adapters       lora_adapters (the base frozen, low-rank adapters beside its projections), then
                      nf4_base (QLoRA: the frozen projections stored in 4-bit NF4)
    5. memory         checkpoint_blocks, chunked_cross_entropy, offload_activations
    6. parallel       DDP or FSDP2 under `make ddp` / `make fsdp` (applied by itself, see below)
    7. optimizer      adamw, fused_adamw, adamw_8bit, paged_adamw_8bit, torchao_adamw_8bit, lion, lion_8bit,
                      adam, sgd, offload_adamw; then step_in_backward (each parameter's step as its gradient is ready)
    8. compile        compile_model
    9. step           accumulate, cuda_graphs (how the loop drives one optimizer step)

Why this order: the architecture decides the weights everything else acts on; the attention
kernel depends on the precision (flash kernels need half precision on CUDA); adapters sit on
the finished layers, in their precision; checkpointing wraps the finished blocks (adapters
inside them); DDP wraps, or FSDP2 shards, the finished model (torchtitan's
order); the optimizer is built once the parameters are final (sharded, under FSDP2); compile
traces the finished model; capturing the whole step in a CUDA graph needs the model, the
optimizer and the micro-batching fixed. Applying a stage after a later one is refused, so any
subset composes (see scripts/stack.py). No script names the parallel stage: under torchrun
it is applied as the run passes it, so every technique runs under DDP and FSDP2 unchanged.
A technique that cannot run on this machine raises Skip with a reason for the user; the run
is then recorded as skipped, not failed. Which function belongs to which stage is one table,
utils/catalog.py's FUNCTIONS (stdlib, so combinations are checked without torch); the
`technique` decorator enters a function's stage from it. A combination (`flash+lion`) is the
baseline's calls plus each part's own, in this order (combined.py).
"""

from utils.techniques.adapters import lora_adapters, nf4_base
from utils.techniques.combined import setup_of
from utils.techniques.optimizers import (
    ADAMW_LR,
    adam,
    adamw,
    adamw_8bit,
    fused_adamw,
    lion,
    lion_8bit,
    offload_adamw,
    paged_adamw_8bit,
    sgd,
    step_in_backward,
    torchao_adamw_8bit,
)
from utils.techniques.run import STAGES, Run, Skip, new_run, technique
from utils.techniques.stages import (
    accumulate,
    autocast_bf16,
    autocast_fp16,
    bf16_weights,
    checkpoint_blocks,
    chunked_cross_entropy,
    compile_model,
    cuda_graphs,
    flash_attention,
    gated_mlp,
    offload_activations,
    strict_fp32,
    tf32,
)

__all__ = [
    "ADAMW_LR", "STAGES", "Run", "Skip", "new_run", "accumulate", "adam", "adamw", "adamw_8bit",
    "autocast_bf16", "autocast_fp16", "bf16_weights", "checkpoint_blocks", "chunked_cross_entropy", "compile_model",
    "cuda_graphs", "flash_attention", "fused_adamw", "gated_mlp", "lion", "lion_8bit", "lora_adapters", "nf4_base",
    "offload_activations", "offload_adamw", "paged_adamw_8bit", "setup_of", "sgd", "step_in_backward",
    "strict_fp32", "technique", "tf32", "torchao_adamw_8bit",
]
