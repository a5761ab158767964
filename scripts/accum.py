"""accum: gradient accumulation, ACCUM micro-batches of BATCH per optimizer step.

Each micro-batch runs forward and backward with its loss divided by ACCUM, so the summed
gradient is the mean over ACCUM x BATCH sequences, as one step on the big batch would give;
the optimizer steps once. A row is one optimizer step and its tokens/s counts every
micro-batch. Pays for memory, not speed: the effective batch of a large run at the
activation memory of a small one (and the optimizer step amortised over ACCUM micro-batches).
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)
    t.accumulate(run)


if __name__ == "__main__":
    main(setup)
