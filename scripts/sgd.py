"""sgd: plain stochastic gradient descent instead of AdamW (seeds 000 and 004).

The cheapest update there is: p -= lr * grad, no optimizer state, so the optimizer step is
fastest and optimizer memory is zero. It runs at the same LR as AdamW, as seed 000 compared
them; SGD usually needs a much larger one to learn at a similar pace, so read its loss
column as "same LR", not as a tuned comparison (make sgd LR=0.1 tries one).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.sgd(run)


if __name__ == "__main__":
    main(setup)
