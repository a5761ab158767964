"""offload_activations' hooks: what autograd saves for backward kept in host memory, but weights.

torch.autograd.graph.save_on_cpu's pack and unpack (torch/autograd/graph.py: pinned, an empty host
tensor the saved one is copied into without waiting, back to its device in backward; unpinned,
`tensor.cpu()`, which on a CPU is the tensor itself), with two changes. The pinned host tensor takes
the saved one's layout (`empty_like`, as torchtune's OffloadActivations makes it; save_on_cpu's is
contiguous): a compiled backward is traced for its saved tensors' strides (a transposed attention
output) and reads them through views that hold only for those. And a weight, or a view of one
(a linear saves its transposed weight; FSDP2's unsharded parameters during forward), stays where it
is. Copying it to the host frees nothing, since the weight stays on the device (FSDP2 frees and
gathers its memory itself), and backward would make a second device copy of it. torchtune's
OffloadActivations keeps parameters and buffers (training/_activation_offloading.py: the instances,
not their views) and leaves the output projection alone. Autocast's bf16 copy of an fp32 weight is
not the weight: it is offloaded like any activation, and that does free device memory.
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
    """The identities of the memory `module`'s parameters and buffers hold when it is asked."""
    return {_storage(t) for t in itertools.chain(module.parameters(), module.buffers())} - {None}


def is_weight(tensor, weights):
    """Whether `tensor` is a parameter or a view of one (whichever parameters the module holds at that
    moment), or holds the memory of one of the `weights` (weights_of: buffers, tied weights)."""
    base = tensor if tensor._base is None else tensor._base
    return isinstance(base, torch.nn.Parameter) or _storage(tensor) in weights


def hooks(module, to_host, to_device):
    """(pack, unpack) for saved_tensors_hooks: `to_host(tensor)` for what autograd saves, but `module`'s
    weights, which stay as they are; `to_device` of what it returned, in backward."""
    weights = weights_of(module)

    def pack(tensor):
        return tensor if is_weight(tensor, weights) else to_host(tensor)

    def unpack(packed):
        return packed if isinstance(packed, torch.Tensor) else to_device(packed)

    return pack, unpack


def save_on_cpu_copies(pin):
    """(to_host, to_device): save_on_cpu's copies, pinned if `pin`."""

    def to_host(tensor):
        if not pin:
            return tensor.device, tensor.cpu()
        host = torch.empty_like(tensor, device="cpu", pin_memory=True)
        host.copy_(tensor, non_blocking=True)
        return tensor.device, host

    def to_device(packed):
        device, host = packed
        return host.to(device, non_blocking=pin)

    return to_host, to_device


@contextlib.contextmanager
def on_host(module, pin):
    """Within it, what autograd saves, but `module`'s weights, goes to host memory (pinned if `pin`)."""
    with torch.autograd.graph.saved_tensors_hooks(*hooks(module, *save_on_cpu_copies(pin))):
        yield
