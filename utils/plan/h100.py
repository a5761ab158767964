"""The H100 reference table, once: what a bare training loop measured on one GPU, the figures
the planner is checked against (`make plan_check`, utils/plan/reference.py), its step-time
efficiency is calibrated on (one declared row, utils/plan/timing.py) and the technique scripts'
docstrings cite. Stdlib only.

The loop: nanoGPT's GPT-2 124M, T=1024, random tokens, AdamW, 10 warm-up steps then the median
of 25 timed with CUDA events, `torch.cuda.max_memory_allocated`; torch 2.11+cu130 on an NVIDIA
H100 80GB HBM3 (SXM), 2026-11-23.
"""

# (configuration, the suite's technique for it, batch, peak allocated GiB, ms per step)
H100_PEAKS = (
    ("fp32, AdamW, manual attention", "baseline", 16, 31.9, 385.3),
    ("tf32", "tf32", 16, 31.9, 164.5),
    ("bf16 autocast", "bf16", 16, 29.6, 137.2),
    ("bf16 + SDPA flash", "flash", 16, 16.0, 48.2),
    ("bf16 + flash + fused AdamW", "flash+fused", 16, 16.1, 45.7),
    ("bf16 + flash + AdamW8bit", "flash+8bit", 16, 15.4, 54.0),
    ("bf16 + flash + Lion (bnb)", "flash+lion", 16, 15.6, 51.0),
    ("bf16 + flash + Lion8bit", "flash+lion8bit", 16, 15.2, 51.6),
    ("bf16 + flash + fused + checkpointing", "flash+checkpointing+fused", 16, 11.4, 53.3),
    ("fp16 + flash + fused", "fp16+flash+fused", 16, 16.4, 45.1),
    ("fp32 + torch.compile", "compile", 16, 29.4, 323.8),
    ("bf16 + flash + fused + compile", "stack", 16, 11.5, 34.8),
    ("same, B=32", "stack", 32, 21.3, 66.7),
)

# the same loop's "levers" past `stack`, the same day: (configuration, technique, batch, peak allocated
# GiB, ms per step (16,384 tokens at the 459k tokens/s measured), torch.compile mode)
H100_LEVERS = (
    ("bf16 + flash + fused + compile, mode reduce-overhead (CUDA graphs)", "stack", 16, 12.9, 35.7, "reduce-overhead"),
)

# a large bf16 matmul on the same GPU, the same day: TFLOP/s reached
MATMUL_BF16_TFLOPS = 798


def row(label):
    """The table's row of this configuration (KeyError naming the labels otherwise)."""
    found = {r[0]: r for r in H100_PEAKS}
    if label not in found:
        raise KeyError(f"no H100 reference row {label!r}; rows: {', '.join(found)}")
    return found[label]
