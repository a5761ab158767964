"""GPU specs, in one table: the dense peak that model FLOPs are judged against (MFU).

Each model states its own FLOPs per token (utils/models/, `flops_per_token`: *model* FLOPs,
so activation checkpointing's recomputation is not counted and MFU says how well the model's
work is done).

The peak is the datasheet's **dense** rate (no 2:4 sparsity) for the precision the matmuls
ran in, so an fp32 run is judged against the fp32 peak, not the bf16 one. A device missing
from the table gets no MFU, never a guessed one; PEAK_TFLOPS=... supplies one.
Plain python: the report imports this without torch.
"""

import re

# (pattern matched against the device name, {precision: dense TFLOP/s}), first match wins.
# Sources: NVIDIA's datasheets (H100 PCIe / SXM / NVL: "NVIDIA H100 Tensor Core GPU"; H200
# shares SXM's compute; A100: "NVIDIA A100 Tensor Core GPU"; A10, L4, T4: their product
# datasheets), halving the "with sparsity" tensor figures; GeForce cards: the Ada and Ampere
# architecture whitepapers (appendix tables: FP16 tensor with FP32 accumulate) and, for the
# laptop RTX 3050 Ti, its 1695 MHz boost x 2560 CUDA cores x 2 FLOPs.
PEAKS = [
    (r"H100.*PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    (r"H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    (r"H100|H200|GH200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),  # SXM
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    (r"A10G?\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),  # A10 datasheet; A10G is AWS's A10
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    (r"RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2}),  # GeForce: bf16 with fp32 accumulate
    (r"RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0}),
    (r"RTX 3050 Ti Laptop", {"fp32": 8.7, "tf32": 8.7, "bf16": 17.4}),  # laptop part, at 1695 MHz boost
    (r"\bT4\b", {"fp32": 8.1, "fp16": 65.0}),  # Turing: fp16 tensor cores, no TF32 or bf16
]
PRECISION = {"fp32": "fp32", "tf32": "tf32", "bf16-autocast": "bf16", "fp16-autocast": "fp16"}


def peak_tflops(device, dtype, override=None):
    """Dense peak TFLOP/s for this device and dtype column value (or `override`), or None."""
    if override:
        return float(override)
    precision = PRECISION.get(dtype)
    for pattern, peaks in PEAKS:
        if re.search(pattern, str(device)):
            # fp16 tensor cores run at the bf16 rate wherever a card has both
            return peaks.get(precision, peaks.get("bf16") if precision == "fp16" else None)
    return None
