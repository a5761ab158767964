"""momentum: SGD with momentum 0.9 (the LSTM-vs-GPT grid's fourth optimizer).

One state tensor per parameter (the velocity), one extra multiply-add per element in the
step.

Default LR (when LR is not given): 0.01. With momentum 0.9 a steady gradient moves the
weights 1 / (1 - 0.9) = 10x as far per step as plain SGD at the same rate (Sutskever et al.
2013, "On the importance of initialization and momentum"), so 0.01 takes the steps of
sgd's 0.1. For a tuned rate: make lrsweep TECHNIQUE=momentum.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.sgd(run, momentum=0.9, default_lr=0.01)


if __name__ == "__main__":
    main(setup)
