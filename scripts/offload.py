"""offload: AdamW's state and step on the CPU (torchao's CPUOffloadOptimizer).

The GPU keeps the parameters and gradients; each gradient is copied to pinned host memory as
backward produces it, the fused CPU AdamW steps there and the new parameters are copied back.
GPU optimizer memory drops to nothing (8 bytes per parameter saved), at the price of PCIe
traffic and a CPU optimizer step: it pays when the model's states, not its activations, are
what does not fit (GPT2-XL's 12 GiB of AdamW state on a 40 GB A100). CUDA only: on a CPU
there is nothing to offload to, so it is skipped with that reason (and without torchao).
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.offload_adamw(run)


if __name__ == "__main__":
    main(setup)
