"""What the planner's fake step does where a real one would not fit fake tensors: modules
converted in place, and activations offloaded to the host leaving the planned device."""

import contextlib
from unittest import mock

import torch
from torch._prims_common import is_non_overlapping_and_dense_or_false
from torch._subclasses.fake_tensor import FakeTensor

from utils.techniques import offload


@contextlib.contextmanager
def fake_modules_converted_in_place():
    """module.to(...) (PEFT moving its adapters beside their layer) on fake
    parameters: torch swaps a fake parameter for its converted copy (nn.Module._apply), which the
    fake mode's weak references to it forbid. A module with fake parameters is converted in place
    instead (`param.data = ...`, what _apply does for a plain tensor); any other as torch does."""
    original = torch.nn.Module._apply

    def apply(module, fn, recurse=True):
        if not any(isinstance(p, FakeTensor) for p in module._parameters.values()):
            return original(module, fn, recurse)
        if recurse:
            for child in module.children():
                child._apply(fn)
        with torch.no_grad():
            for param in module._parameters.values():
                if param is not None:
                    param.data = fn(param)
            for name, buffer in module._buffers.items():
                if buffer is not None:
                    module._buffers[name] = fn(buffer)
        return module

    with mock.patch.object(torch.nn.Module, "_apply", apply):
        yield


@contextlib.contextmanager
def offloaded_activations(module, tracker=None):
    """offload_activations as the GPU runs it (utils/techniques/offload.py): each tensor autograd
    saves, but `module`'s weights, is copied to the host, the device's copy freed once forward drops
    it, and a device copy made again when backward unpacks it. On the planner's fake CPU device the
    host copy would count as device memory: it is kept as its metadata alone, and backward's copy
    is a fresh fake tensor of that shape (the values are fake anyway), laid out as the GPU's copy is
    (offload.py: empty_like's, the saved tensor's strides where it is dense, which a compiled backward
    was traced for; a view of a wider tensor, a fused qkv's query, comes back dense at its own size,
    not its base's span). With a `tracker` (a PeakTracker timing the step), each copy is timed on
    the host link in the phase making it: offload.py's copies are on the compute stream, so the
    step waits for them."""

    def copied(tensor):
        if tracker is not None:
            tracker.on_op.host_copy(tensor, tracker.phase)
        return tensor

    def to_host(tensor):
        dense = is_non_overlapping_and_dense_or_false(copied(tensor))
        return tensor.size(), tensor.stride() if dense else None, tensor.dtype, tensor.device

    def to_device(saved):
        size, stride, dtype, device = saved
        if stride is None:
            return copied(torch.empty(size, dtype=dtype, device=device))
        return copied(torch.empty_strided(size, stride, dtype=dtype, device=device))

    with torch.autograd.graph.saved_tensors_hooks(*offload.hooks(module, to_host, to_device)):
        yield


PAGED_MIN_NUMEL = 1e5  # bitsandbytes optimizer.py get_state_buffer: smaller states stay ordinary tensors


@contextlib.contextmanager
def paged_states(tracker, paged):
    """bitsandbytes' paged optimizer state as on CUDA (bitsandbytes 0.50.2 optim/optimizer.py,
    get_state_buffer: a state of 1e5 elements or more comes from F.get_paged, cudaMallocManaged):
    outside PyTorch's caching allocator, so neither allocated nor reserved counts it; made here
    untracked, its bytes appended to `paged` for the device total (where the driver keeps it
    while the GPU has room)."""
    try:
        from bitsandbytes.optim.optimizer import Optimizer8bit
    except ImportError:
        yield
        return
    original = Optimizer8bit.get_state_buffer

    def get_state_buffer(self, p, dtype=torch.float32):
        if not self.is_paged:
            return original(self, p, dtype)
        if p.numel() < PAGED_MIN_NUMEL:
            return torch.zeros_like(p, dtype=dtype)  # an ordinary tensor, as on CUDA
        tracker.unmaterialised = True
        try:
            buffer = torch.zeros_like(p, dtype=dtype)
        finally:
            tracker.unmaterialised = False
        tracker.off_device[buffer.untyped_storage()] = True
        paged.append(buffer.numel() * buffer.element_size())
        return buffer

    with mock.patch.object(Optimizer8bit, "get_state_buffer", get_state_buffer):
        yield
