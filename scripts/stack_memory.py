"""stack_memory: the least-memory combination: bf16 + flash + checkpointing + Lion8bit.

bf16 autocast halves most activations; flash attention drops the T x T score matrices
(H100, GPT-2 124M B=16 T=1024, utils/plan/h100.py: 29.6 -> 16.0 GiB); checkpointing keeps
one block's activations instead of all (+ fused AdamW: 16.1 -> 11.4 GiB, ~15% slower); Lion8bit
keeps 1 byte of optimizer state per parameter (AdamW8bit 2, AdamW 8). Left out: offload
(less GPU memory still, but CUDA only and bound by PCIe: `make offload` measures it on a
GPU) and torch.compile (it saved memory on the H100, 11.5 GiB, but the planner cannot model
it, and this stack is the one `make plan` and `make maxbatch PLAN=1` can answer for).
Its row in utils/catalog.py says it equals flash+checkpointing+lion8bit.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.autocast_bf16(run)
    t.flash_attention(run)
    t.checkpoint_blocks(run)
    t.lion_8bit(run, lr_scale=1 / 3, weight_decay_scale=3)


if __name__ == "__main__":
    main(setup)
