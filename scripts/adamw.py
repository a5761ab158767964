"""adamw: the baseline's optimizer, under its own name: the A/A check.

Exactly the baseline's setup, kept as its own technique on purpose: it is an A/A test.
Run in the same session, its speedup against the baseline should have a CI around 1.0
("no detectable difference"); if it does not, the machine is drifting or noisy and the
other speedups deserve the same doubt.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
