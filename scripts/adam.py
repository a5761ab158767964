"""adam: torch.optim.Adam, i.e. AdamW without decoupled weight decay (seeds 000, 004).

Same two moments and the same step cost as AdamW; compare its step time with sgd for the
price of adaptivity. Default LR (when LR is not given): 1e-3, the Adam paper's (Kingma & Ba
2015, algorithm 1); to see what weight decay alone does, give both the same: make adam LR=6e-4.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.adam(run, default_lr=1e-3)


if __name__ == "__main__":
    main(setup)
