"""offload_activations' hooks: what autograd saves for backward kept in host memory, but weights.

torch.autograd.graph.save_on_cpu's pack and unpack (torch/autograd/graph.py: an empty host tensor,
pinned on CUDA, the saved tensor copied into it; back to its device in backward, non-blocking when
pinned), with one rule added: a weight, or a view of one (a linear saves its transposed weight),
stays where it is. Copying it to the host frees nothing, since the weight stays on the device, and
backward would make a second device copy of it: the output projection's weight, once per chunk of a
chunked loss, is the largest. torchtune's OffloadActivations keeps parameters and buffers too
(training/_activation_offloading.py), and the output projection's every saved tensor.
"""

import contextlib
import itertools

import torch


def _storage(tensor):
    """The identity of the memory `tensor` views (fake tensors' too), or None where it has none of
    its own (a wrapper subclass: NF4, DTensor)."""
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def weights_of(module):
    """The identities of the memory `module`'s parameters and buffers hold."""
    return {_storage(t) for t in itertools.chain(module.parameters(), module.buffers())} - {None}


def is_weight(tensor, weights):
    """Whether `tensor` is one of the `weights` (weights_of) or views one."""
    return isinstance(tensor, torch.nn.Parameter) or _storage(tensor) in weights


@contextlib.contextmanager
def on_host(module, pin):
    """Within it, what autograd saves, but `module`'s weights, goes to host memory (pinned if `pin`)."""
    weights = weights_of(module)

    def pack(tensor):
        if is_weight(tensor, weights):
            return tensor
        host = torch.empty(tensor.size(), dtype=tensor.dtype, layout=tensor.layout, pin_memory=pin)
        host.copy_(tensor)
        return tensor.device, host

    def unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        device, host = packed
        return host.to(device, non_blocking=pin)

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
