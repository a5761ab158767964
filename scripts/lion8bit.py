"""lion8bit: bitsandbytes Lion8bit, Lion's single moment stored in 8 bits.

Lion keeps one moment per parameter (AdamW keeps two); Lion8bit quantises it block-wise to
uint8 with one fp32 absmax per block of 256, so optimizer state is ~1 byte per parameter
instead of AdamW's 8 (tensors under 4096 elements stay 32-bit). Same LR / 3 and weight decay
x 3 as `lion`. Pays in memory only: the smallest optimizer state the suite has; on an H100
(utils/plan/h100.py, GPT-2 124M with bf16 + flash) it took 15.2 GiB vs AdamW's 16.0, at
about the same speed (51.6 vs 48.2 ms). Skipped, with the reason, without bitsandbytes.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.lion_8bit(run, lr_scale=1 / 3, weight_decay_scale=3)


if __name__ == "__main__":
    main(setup)
