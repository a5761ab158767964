"""momentum: SGD with momentum 0.9 (seed 004).

One state tensor per parameter (the velocity), one extra multiply-add per element in the
step.

Default LR (when LR is not given): 0.01. With momentum 0.9 a steady gradient moves the
weights 1 / (1 - 0.9) = 10x as far per step as plain SGD at the same rate (Sutskever et al.
2013, "On the importance of initialization and momentum"), so 0.01 takes the steps of
sgd's 0.1. For a tuned rate: make lrsweep TECHNIQUE=momentum.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.sgd(run, momentum=0.9, default_lr=0.01)


if __name__ == "__main__":
    main(setup)
