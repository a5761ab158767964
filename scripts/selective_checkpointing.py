"""selective_checkpointing: activation checkpointing that saves what is dear to recompute.

Around each transformer block, as checkpointing, but backward recomputes only part of it:
attention's output and every other matmul's output are kept from the forward pass, the rest
(norms, activations, the other matmuls) recomputed (torchtitan's per-op policy, which its
Llama 3.1 8B benchmarks ran). Between no checkpointing and `checkpointing` in memory and in
time: attention's quadratic recompute and half the matmuls' are spared.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.checkpoint_blocks(run, policy="selective")
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
