"""sgd: plain stochastic gradient descent instead of AdamW (the coin-flip optimizer study, the grid).

The cheapest update there is: p -= lr * grad, no optimizer state, so the optimizer step is
fastest and optimizer memory is zero.

Default LR (when LR is not given): 0.1, the base rate of the standard SGD recipe (He et al.
2016, "Deep Residual Learning", batch 256). SGD wants a far larger rate than AdamW's 6e-4
(the coin-flip optimizer study compared them at the same LR: SGD stayed far from the floor), but the rates
of the LSTM language-model literature, 1 to 20, come with gradient clipping (Zaremba et al.
2014; PyTorch's word_language_model example), which this suite does not do. For a tuned
rate: make lrsweep TECHNIQUE=sgd.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.sgd(run, default_lr=0.1)


if __name__ == "__main__":
    main(setup)
