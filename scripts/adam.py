"""adam: torch.optim.Adam, i.e. AdamW without decoupled weight decay (seeds 000, 004).

Same two moments and the same step cost as AdamW; compare its loss with the baseline to
see what weight decay does, and its step time with sgd for the price of adaptivity.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.adam(run)


if __name__ == "__main__":
    main(setup)
