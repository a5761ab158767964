"""Inductor's scheduling as on the planned GPU, on a torch with no CUDA and no Triton.

The planner's compiled graphs are traced on fake CPU tensors; lowered as they are, inductor
fuses them by its C++ backend's rules. A GPU runs Triton's (torch/_inductor/codegen/simd.py and
triton.py), and some scheduling paths exist only for a GPU: mix-order reductions (LayerNorm
backward's row and column reductions in one kernel), split reductions sized by the SM count
(ir.Reduction.num_splits), the GPU's loop-order merges. `on_cuda` copies a graph with its fake
tensors relabelled to `cuda:0` (their metadata only: no op runs on them) and `cuda_scheduling`
answers what lowering and scheduling ask of a CUDA device (torch.cuda's and the dynamo
CudaInterface's properties: the planned GPU's SMs and compute capability) and of Triton (the
scheduler only checks that it is importable: `has_triton`; fusion never imports it). Measured
on the suite's GPT-2 (`stack`, B=16, T=1024): 224 forward / 432 backward kernels against the C++
backend's 243 / 399, 3–4% fewer bytes moved. PyTorch's test_perf.py golden counts hold under
both (tests/unit/test_plan_inductor.py).
"""

import contextlib
import copy
import types
from unittest import mock

import torch
from torch._subclasses.fake_tensor import FakeTensor

CUDA = torch.device("cuda", 0)


def on_cuda(graph, example_inputs, fake):
    """A copy of `graph` whose fake tensors (its inputs, each node's meta['val']) and device
    arguments are on cuda:0, relabelled (no op is run on a fake CUDA tensor)."""

    def relabel(value):
        if isinstance(value, FakeTensor) and value.device.type == "cpu":
            meta = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
            return FakeTensor(fake, meta, CUDA)
        return value

    def device(arg):
        return CUDA if isinstance(arg, torch.device) and arg.type == "cpu" else arg

    moved = copy.deepcopy(graph)
    for node in moved.graph.nodes:
        node.args, node.kwargs = (torch.fx.node.map_aggregate(a, device) for a in (node.args, node.kwargs))
        if "val" in node.meta:
            node.meta["val"] = torch.utils._pytree.tree_map(relabel, node.meta["val"])
    moved.recompile()
    return moved, [relabel(value) for value in example_inputs]


def _properties(gpu):
    """What inductor reads of torch.cuda.get_device_properties, for a utils.devices.GPU."""
    major, minor = gpu.capability
    # threads per SM: 2048 on the data-centre parts (7.0, 8.0, 9.0), 1536 on 8.6 / 8.9, 1024 on 7.5
    threads = {(7, 5): 1024, (8, 6): 1536, (8, 9): 1536}.get(tuple(gpu.capability), 2048)
    # gcnArchName: a CUDA device's properties carry it too (inductor's mm lowering reads it as the device's name)
    return types.SimpleNamespace(name=gpu.name, gcnArchName=gpu.name, major=major, minor=minor,
                                 multi_processor_count=gpu.sms,
                                 warp_size=32, regs_per_multiprocessor=65536, max_threads_per_multi_processor=threads,
                                 max_threads_per_block=1024, total_memory=int(gpu.memory_gib * 2**30))


@contextlib.contextmanager
def cuda_scheduling(gpu):
    """Within it, inductor lowers and schedules for `gpu` (a utils.devices.GPU) as if it were here."""
    from torch._dynamo.device_interface import CudaInterface
    from torch._inductor import scheduler
    from torch._inductor.runtime.hints import DeviceProperties

    props = _properties(gpu)

    def get_props(device=None):
        return props

    patches = [
        (torch.cuda, "get_device_properties", get_props),
        (torch.cuda, "get_device_capability", lambda device=None: (props.major, props.minor)),
        (torch.cuda, "is_available", lambda: True), (torch.cuda, "device_count", lambda: 1),
        (torch.cuda, "current_device", lambda: 0),
        # checkpointing's RNG replay saves the generator's state as it lowers (torch/_prims/rng_prims.py)
        (torch.cuda, "get_rng_state", lambda device="cuda": torch.get_rng_state()),
        (CudaInterface, "get_device_properties", staticmethod(get_props)),  # DeviceProperties.create's
        (CudaInterface, "get_compute_capability", staticmethod(lambda device=None: props.major * 10 + props.minor)),
        (CudaInterface, "is_available", staticmethod(lambda: True)),
        (CudaInterface, "current_device", staticmethod(lambda: 0)),
        (CudaInterface, "device_count", staticmethod(lambda: 1)),
        # Scheduler.create_backend refuses a GPU without Triton (TritonMissing); fusion never imports it
        (scheduler, "has_triton", lambda *args: True),
        # a Tensor method's Python binding takes a CUDA device guard (a CPU build has none), the aten op none:
        # post-grad's FakeTensorUpdater reruns `~mask` (_unsafe_masked_index_put_accumulate's decomposition),
        # its reinplacing pass copies into views (reinplace.py, _inplace_generalized_scatter)
        (torch.Tensor, "__invert__", lambda self: torch.ops.aten.bitwise_not.default(self)),
        (torch.Tensor, "copy_", lambda self, src, non_blocking=False: torch.ops.aten.copy_.default(self, src,
                                                                                                  non_blocking)),
    ]
    with contextlib.ExitStack() as stack:
        for owner, name, value in patches:
            stack.enter_context(mock.patch.object(owner, name, value))
        DeviceProperties.create.cache_clear()  # cached by device alone: another GPU's must not stay
        stack.callback(DeviceProperties.create.cache_clear)
        yield
