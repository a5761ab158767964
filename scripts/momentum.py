"""momentum: SGD with momentum 0.9 (seed 004).

One state tensor per parameter (the velocity), one extra multiply-add per element in the
step. Same LR as AdamW, as in seed 000; momentum SGD usually wants a larger one.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.sgd(run, momentum=0.9)


if __name__ == "__main__":
    main(setup)
