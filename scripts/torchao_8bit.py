"""torchao_8bit: torchao's AdamW8bit, AdamW's two moments block-quantised to uint8.

The state is 8bit's (one byte per moment and parameter, an fp32 scale per block of 256), the
step is not: each parameter's update is one torch.compile'd function that dequantises, updates
in fp32 and requantises (torchao/optim/adam.py), compiled at the first step for each parameter
shape. Its memory beyond the state is the compiled step's fp32 temporaries, largest for the
largest parameter (an embedding).
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.torchao_adamw_8bit(run)


if __name__ == "__main__":
    main(setup)
