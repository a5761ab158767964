"""step_in_backward: each parameter's optimizer step taken in backward, its gradient freed at once.

A post-accumulate-grad hook on every parameter runs that parameter's AdamW step as soon as
backward has its gradient, then frees the gradient: at most a few gradients exist at any time
instead of the whole model's (4 bytes per parameter in fp32), the same updates as AdamW.
It cannot accumulate gradients over micro-batches, unscale fp16's, run under DDP / FSDP2 or
be captured in a CUDA graph: those are refused.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw(run)
    t.step_in_backward(run)


if __name__ == "__main__":
    main(setup)
