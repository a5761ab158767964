"""lion: the Lion optimizer, sign of an interpolated momentum: one state tensor, not two.

Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"; from bitsandbytes, or
lion-pytorch if bitsandbytes is missing.

Lion keeps one moment instead of AdamW's two (4 bytes per parameter saved) and its update
is a sign, so every coordinate moves by lr. Hence the paper advises a learning rate 3-10x
smaller than AdamW and a weight decay 3-10x larger, keeping lr x weight decay (the
effective decay) the same. Here: lr / 3 and weight decay x 3 (0.1 -> 0.3).
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.lion(run, lr_scale=1 / 3, weight_decay_scale=3)


if __name__ == "__main__":
    main(setup)
