"""offload_activations: the activations saved for backward kept in host memory.

Not `offload` (that is the optimizer's state). Each tensor autograd saves in forward, but a
weight or a view of one (it stays on the GPU anyway), is copied to pinned host memory
(save_on_cpu's hooks) and back when backward needs it: the GPU holds the weights, the current
layer's work and the gradients, not every layer's activations, at the price of PCIe traffic
each way. On a CPU it runs and moves nothing.
"""

from utils import techniques as t
from utils.measure.train import main


def setup(run):
    t.strict_fp32(run)
    t.offload_activations(run)
    t.adamw(run)


if __name__ == "__main__":
    main(setup)
