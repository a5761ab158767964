"""stack_memory: the least-memory eager combination: bf16 + flash + checkpointing + Lion8bit.

bf16 autocast halves most activations; flash attention drops the T x T score matrices
(H100, GPT-2 124M B=16 T=1024, utils/plan/h100.py: 29.6 -> 16.0 GiB); checkpointing keeps
one block's activations instead of all (+ fused AdamW: 16.1 -> 11.4 GiB, ~15% slower); Lion8bit
keeps 1 byte of optimizer state per parameter (AdamW8bit 2, AdamW 8). Left out: offload
(less GPU memory still, but CUDA only and bound by PCIe: `make offload` measures it on a
GPU) and torch.compile, to keep this stack eager: no compile in its warm-up, and a plan in seconds
(`make plan` and `make maxbatch PLAN=1` try it at many batches). Compile would cut more: on the H100 it
took bf16 + flash + fused from 16.1 to 11.5 GiB, and the planner predicts `stack_memory+compile` at 6.1
GiB against this stack's 10.8 there (`make plan TECHNIQUES="stack_memory stack_memory+compile"
MODEL=gpt2 BATCH=16 SEQ=1024 GPU=h100-sxm`, on a CPU: 35 s against 4 s to plan; predicted, not measured).
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
