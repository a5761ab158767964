"""pure_bf16: weights, gradients and AdamW's state in bf16, with no fp32 master copy.

What torchtune trains in by default (Lightning's "bf16-true"), unlike bf16 (autocast: fp32
weights, bf16 matmuls). Every per-parameter tensor is half the size: weights, gradients and
both moments, 16 bytes per parameter down to 8, and the activations are bf16 too. The price is
in learning: an update smaller than the weight's bf16 spacing (8 mantissa bits, ~0.4% of its
size) rounds away, so small learning rates stall. Ampere or newer on CUDA.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.bf16_weights(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
