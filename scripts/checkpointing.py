"""checkpointing: activation checkpointing around each transformer block.

torch.utils.checkpoint keeps only each block's input in the forward pass and recomputes the
block's activations during backward. Activation memory drops from O(layers x block
activations) to about one block's worth, at the price of a second forward pass per block
(~+30% compute). Pays when memory, not speed, is the limit: a bigger batch or model fits.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.checkpoint_blocks(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
