"""Model FLOPs measured rather than written down, for models the suite has no formula for:
PyTorch's FlopCounterMode over one forward + backward of the loss, on fake tensors
(FakeTensorMode: shapes without data, so a 2.7B model costs nothing to count), at the run's
sequence length. Counted are the matmul-like ops (mm, addmm, bmm, baddbmm, convolutions and
SDPA's kernels, forward and backward); elementwise work, norms, softmax and the embedding
lookup are not, as PaLM's 6N + 12·L·d·T does not count them either. Model FLOPs: what
activation checkpointing recomputes is never counted (the model measured is unwrapped).

Each configuration is measured once per process (the MODEL check measures it; the run's
rows reuse the number).
"""

import torch
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from torch.utils.flop_counter import FlopCounterMode

MEASURED = {}  # (model, seq, layers) -> FLOPs per token


def count(model, seq, batch=1):
    """FLOPs of forward + backward per token of `model` (forward(idx, targets) -> (logits, loss)),
    built on fake tensors, at `batch` x `seq` token 0s. Returns (FLOPs per token, logits, loss)."""
    idx = torch.zeros(batch, seq, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        logits, loss = model(idx, idx)
        loss.backward()
    return round(counter.get_total_flops() / (batch * seq)), logits, loss


def per_token(key, make, seq):
    """The FLOPs per token of the model make() builds, measured once per `key`."""
    if key not in MEASURED:
        with unset_fake_temporarily(), FakeTensorMode(allow_non_fake_inputs=True):
            MEASURED[key] = count(make(), seq)[0]
    return MEASURED[key]
