"""swiglu: the MLP becomes SwiGLU, c_proj(silu(gate(x)) * up(x)), as in LLaMA and PaLM.

Three matrices of width x hidden instead of GELU's two of width x 4*width; hidden is
2/3 * 4 * width rounded to a multiple of 64, so the parameter count (and the FLOPs per
token) match the GELU MLP and the comparison is like for like. Changes the model, so the
loss can change: it is about quality per FLOP (Shazeer 2020), and step time shows its cost.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.gated_mlp(run, "swiglu")
    t.strict_fp32(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
