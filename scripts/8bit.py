"""8bit: bitsandbytes AdamW8bit, optimizer state in 8 bits.

AdamW keeps two fp32 moments per parameter (8 bytes); block-wise quantised to uint8 they
take 2 bytes, so optimizer memory drops ~75% (tensors under 4096 elements stay 32-bit).
Pays in memory: bigger models or batches fit. Speed is about the same or a little slower
(quantise / dequantise each step). Skipped, with the reason, if bitsandbytes is missing.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adamw_8bit(run)


if __name__ == "__main__":
    main(setup)
