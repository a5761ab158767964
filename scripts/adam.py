"""adam: torch.optim.Adam, i.e. AdamW without decoupled weight decay (the coin-flip study, the grid).

Same two moments and the same step cost as AdamW; compare its step time with sgd for the
price of adaptivity. Default LR (when LR is not given): 1e-3, the Adam paper's (Kingma & Ba
2015, algorithm 1); to see what weight decay alone does, give both the same: make adam LR=6e-4.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.adam(run, default_lr=1e-3)


if __name__ == "__main__":
    main(setup)
