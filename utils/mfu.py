"""Model FLOPs and the dense peak they are judged against (MFU).

FLOPs per token follow PaLM's appendix B: 6N for the matmuls of forward and backward plus
12 * n_layer * n_embd * T for attention's score and value products (N: parameters without
the position embedding, as nanoGPT counts them). These are *model* FLOPs: activation
checkpointing's recomputation is not counted, so MFU says how well the model's work is done.

The peak is the datasheet's **dense** rate (no 2:4 sparsity) for the precision the matmuls
ran in, so an fp32 run is judged against the fp32 peak, not the bf16 one. A device missing
from the table gets no MFU, never a guessed one; PEAK_TFLOPS=... supplies one.
Plain python: the report imports this without torch.
"""
import re

# (pattern matched against the device name, {precision: dense TFLOP/s}), first match wins
PEAKS = [
    (r"H100.*PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0}),
    (r"H100 NVL", {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5}),
    (r"H100|H200|GH200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4}),  # SXM
    (r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0}),
    (r"A10G?\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0}),  # A10 datasheet; A10G is AWS's A10
    (r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0}),
    (r"RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2}),  # GeForce: bf16 with fp32 accumulate
    (r"RTX 3090", {"fp32": 35.6, "tf32": 35.6, "bf16": 71.0}),
    (r"RTX 3050 Ti Laptop", {"fp32": 8.7, "tf32": 8.7, "bf16": 17.4}),  # seed 002's card, at 1695 MHz boost
    (r"\bT4\b", {"fp32": 8.1}),  # seed 004's card: Turing, no TF32 or bf16 tensor cores
]
PRECISION = {"fp32": "fp32", "tf32": "tf32", "bf16-autocast": "bf16"}


def flops_per_token(n_params_without_wpe, n_layer, n_embd, seq):
    return 6 * n_params_without_wpe + 12 * n_layer * n_embd * seq


def peak_tflops(device, dtype, override=None):
    """Dense peak TFLOP/s for this device and dtype column value (or `override`), or None."""
    if override:
        return float(override)
    precision = PRECISION.get(dtype)
    for pattern, peaks in PEAKS:
        if re.search(pattern, str(device)):
            return peaks.get(precision)
    return None
