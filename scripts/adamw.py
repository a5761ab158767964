"""adamw: the baseline's optimizer, under the name seeds 000 and 004 use for it.

Exactly the baseline's setup, kept as its own technique on purpose: it is an A/A test.
Run in the same session, its speedup against the baseline should have a CI around 1.0
("no detectable difference"); if it does not, the machine is drifting or noisy and the
other speedups deserve the same doubt.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
