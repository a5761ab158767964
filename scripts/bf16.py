"""bf16: autocast the forward pass (and loss) to bfloat16.

Matmuls and most activations run in bf16, which tensor cores execute at ~2x TF32's rate,
and saved activations take half the memory. Weights, gradients and optimizer state stay
fp32. bf16 keeps fp32's exponent range, so unlike fp16 it needs no loss scaling.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.autocast_bf16(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
