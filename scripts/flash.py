"""flash: fused attention that never materialises the T x T score matrix.

PyTorch SDPA (F.scaled_dot_product_attention), which dispatches to a FlashAttention
kernel where it can (the kernel that ran is recorded: sdpa:flash / efficient / cudnn /
math); the flash-attn package instead when it is importable on CUDA. Attention memory goes
from O(T^2) to O(T) and the scores stay in on-chip SRAM, so it pays most at long sequences.
Prerequisite: flash kernels need half precision on CUDA, so this runs under bf16 autocast
(the bf16 line below); compare it with bf16, not only with the baseline.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.autocast_bf16(run)  # prerequisite: flash kernels need fp16/bf16 on CUDA
    t.flash_attention(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
