"""stack: the techniques that pay for speed, together: bf16 autocast + flash
attention + fused AdamW + torch.compile.

Each line is the same function its own script applies; utils/techniques.py applies them
in a fixed order (precision, attention, memory, optimizer, compile), so they compose. This
is the configuration to compare with the best of the single techniques.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.strict_fp32(run)
    t.autocast_bf16(run)
    t.flash_attention(run)
    t.fused_adamw(run)
    t.compile_model(run)


if __name__ == "__main__":
    main(setup)
