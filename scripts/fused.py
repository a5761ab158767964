"""fused: AdamW with fused=True.

The plain optimizer launches a few kernels per parameter group and op (foreach) or per
parameter (for-loop); the fused one updates all parameters in one kernel per step, reading
each of param, grad and the two moments once. Pays when the optimizer step is a visible
share of the step (small models, small batches); changes no numerics beyond rounding.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.fused_adamw(run)


if __name__ == "__main__":
    main(setup)
