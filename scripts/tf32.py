"""tf32: fp32 matmuls on TF32 tensor cores.

TF32 keeps fp32's 8-bit exponent but only 10 mantissa bits, and Ampere-and-newer tensor
cores run it at ~8x fp32's rate (H100: ~495 vs ~67 TFLOP/s dense). Weights, activations and
memory stay fp32, so only speed changes; precision loss is rarely visible in training.
A CUDA-only mode: on a CPU the run is skipped, with that reason recorded.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.tf32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
