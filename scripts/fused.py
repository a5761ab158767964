"""fused: AdamW with fused=True.

The plain optimizer launches a few kernels per parameter group and op (foreach) or per
parameter (for-loop); the fused one updates all parameters in one kernel per step, reading
each of param, grad and the two moments once. Pays when the optimizer step is a visible
share of the step (small models, small batches); changes no numerics beyond rounding.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.fused_adamw(run)


if __name__ == "__main__":
    main(setup)
