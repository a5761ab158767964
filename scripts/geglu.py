"""geglu: the MLP becomes GeGLU, c_proj(gelu(gate(x)) * up(x)).

The same gated shape as swiglu (hidden 2/3 * 4 * width, rounded to a multiple of 64, so the
parameter count matches the GELU MLP) with GELU as the gate's activation (Shazeer 2020).
Changes the model: compare step time and loss, not only speed.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # utils/ sits beside scripts/
from utils import techniques as t  # noqa: E402
from utils.train import main  # noqa: E402


def setup(run):
    t.gated_mlp(run, "geglu")
    t.strict_fp32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
