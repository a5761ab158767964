"""geglu: the MLP becomes GeGLU, c_proj(gelu(gate(x)) * up(x)).

The same gated shape as swiglu (hidden 2/3 * 4 * width, rounded to a multiple of 64, so the
parameter count matches the GELU MLP) with GELU as the gate's activation (Shazeer 2020).
Changes the model: compare step time and loss, not only speed.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.gated_mlp(run, "geglu")
    t.strict_fp32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
