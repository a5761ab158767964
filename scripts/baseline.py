"""baseline: the reference every other technique is measured against.

fp32 with TF32 explicitly off (otherwise pytorch may quietly run fp32 matmuls on TF32
tensor cores and the "fp32" baseline would not be one), attention written out by hand
(the full T x T score matrix), plain torch.optim.AdamW (not fused), eager mode.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
