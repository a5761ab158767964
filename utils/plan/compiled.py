"""torch.compile planned: what AOTAutograd keeps for backward, traced on fake tensors.

Inductor's memory is set by two things: which activations the forward saves for backward
(AOTAutograd's partition of the joint forward + backward graph: inductor's min-cut
rematerialisation partitioner, which recomputes cheap ops in backward instead of saving
them) and how its kernels use buffers (fusion: a chain of pointwise ops writes one output,
no intermediates). The plan compiles the model as the `aot_eager_decomp_partition` backend
does (torch/_dynamo/backends/debugging.py: inductor's decompositions and its min-cut
partitioner), then runs each graph op by op (torch.fx.Interpreter, each value freed after its
last use) with the tracker entered around it (as `aot_eager_decomp_partition_with_mode` does:
dynamo itself runs with no dispatch mode on the stack, the tracker saying
`ignore_compile_internals`). So the saved activations are inductor's. Fusion is modelled, and it
is a model, not inductor's scheduler: a pointwise op's output (torch.Tag.pointwise) is fused
into its consumers and never materialised unless it leaves the graph (a saved activation, a
gradient, an output) or feeds an op inductor runs as a separate kernel (a matmul, attention, a
scatter: anything neither pointwise, a reduction nor a view); a view passes that need on to the
tensor it views; constants (full, zeros, iota), a scatter into one (inductor's
scatter_upon_const_tensor) and an indirect load (gather, index) count as pointwise. Reductions
and extern kernels write their outputs. Not modelled: inductor's buffer reuse between kernels
(the plan can be high) and its realisation of a pointwise buffer that many kernels read (the
plan can be low). In reduce-overhead mode each graph's allocations come from the CUDA graphs'
private pool (utils/plan/cudagraphs.py).

The step's time is not that model's: each graph is lowered and scheduled by inductor itself
(`scheduled_kernels`: its post-grad passes, lowering and fusion, no code generated), and the
timing counts inductor's kernels with the bytes its scheduler says each moves. For a plan with a
GPU inductor schedules as on that GPU, by Triton's rules (utils/plan/inductor_cuda.py: the
graph's fake tensors relabelled to CUDA); a plan of this CPU's step, by its C++ backend's.
"""

import collections
import contextlib
import copy
import functools
import warnings
from unittest import mock

import torch
import torch.fx
from functorch.compile import min_cut_rematerialization_partition
from torch._dynamo.backends.common import aot_autograd
from torch._guards import detect_fake_mode
from torch._prims.rng_prims import run_and_save_rng_state, run_with_rng_state
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from utils import catalog
from utils.plan.cudagraphs import in_graph_pool
from utils.plan.inductor_cuda import cuda_scheduling, on_cuda
from utils.plan.timing import ATTENTION_OPS, Op, attention_flops, counted_flops, is_view

APPROXIMATED = ("torch.compile: AOTAutograd's min-cut partition on inductor's decompositions (the saved activations "
                "inductor keeps), fusion modelled: pointwise intermediates not written unless they leave the graph or "
                "feed a matmul, attention or scatter")


aten, prims = torch.ops.aten, torch.ops.prims
# constants inductor computes inside the kernels that read them, never as buffers
FACTORIES = (aten.full.default, aten.zeros.default, aten.ones.default, aten.scalar_tensor.default, prims.iota.default)
SCATTERS = (aten.scatter.value, aten.scatter.src)
# indirect loads: inductor lowers them as pointwise kernels that read their input through its loader
# (torch/_inductor/lowering.py, gather and index_impl_helper: x.make_loader()), so a pointwise input is
# computed where it is read, never written: cross-entropy's gather of its log-softmax
INDIRECT_LOADS = (aten.gather.default, aten.index.Tensor)


def _fusible(node):
    if node.op != "call_function":
        return False
    if node.target in FACTORIES or node.target in INDIRECT_LOADS:
        return True
    if node.target in SCATTERS:
        # a scatter into a constant is a pointwise select (inductor's scatter_upon_const_tensor,
        # torch/_inductor/fx_passes/post_grad.py): cross-entropy's backward builds one
        return node.args[0].op == "call_function" and node.args[0].target in FACTORIES
    return torch.Tag.pointwise in getattr(node.target, "tags", ())


def materialised(graph):
    """The nodes whose outputs inductor would write to memory (see the module's docstring)."""
    outputs = {arg for node in graph.nodes if node.op == "output" for arg in node.all_input_nodes}
    needed = set()

    def needs_memory(node):  # does this value have to exist in memory for its consumers?
        if node in outputs:
            return True
        for user in node.users:
            if user.op != "call_function":
                return True
            if is_view(user.target):
                if needs_memory(user):
                    return True
            elif not _fusible(user) and torch.Tag.reduction not in getattr(user.target, "tags", ()):
                return True  # an extern kernel reads it from memory
        return False

    for node in graph.nodes:
        # a view allocates nothing: it is tracked (its base's storage) only where it must exist
        written = needs_memory(node) if is_view(getattr(node, "target", None)) else not _fusible(node)
        if written or needs_memory(node):
            needed.add(node)
    return needed


# checkpointing's recompute inside a compiled graph replays its random ops from a saved RNG state:
# two higher-order ops, run here as their fake-tensor rules do (torch/_prims/rng_prims.py), so the
# op inside reaches the tracker as any other op (a HOP has no rule for a dispatch mode of ours)
RNG_REPLAY = {
    run_and_save_rng_state: lambda op, *args, **kwargs: (torch.get_rng_state(), op(*args, **kwargs)),
    run_with_rng_state: lambda state, op, *args, **kwargs: op(*args, **kwargs),
}


def _fx_flops(node):
    """(FLOPs, kind, dtype of its first input) of one FX node, as the timing recorder counts an op:
    attention or a matmul; (0, "memory", None) for anything else."""
    target = node.target
    if not hasattr(target, "_overloadpacket"):
        return 0, "memory", None
    args, kwargs = torch.fx.node.map_aggregate(
        (node.args, node.kwargs), lambda a: a.meta.get("val") if isinstance(a, torch.fx.Node) else a)
    dtype = next((a.dtype for a in args if isinstance(a, torch.Tensor)), None)
    if target._overloadpacket.__name__ in ATTENTION_OPS:
        return attention_flops(target, args, kwargs), "attention", dtype
    flops = counted_flops(target, args, kwargs, node.meta.get("val"))
    return flops, "matmul" if flops else "memory", dtype


def _dtype(kernel):
    """What a scheduled kernel computes in (a kernel of several outputs: its first's)."""
    for node in (kernel.node, *(n.node for n in kernel.get_nodes())):
        try:
            return node.get_dtype()
        except (AttributeError, NotImplementedError):
            continue
    return torch.float32


def _bytes(kernel):
    """The bytes inductor's scheduler counts a kernel to read and write (get_read_write_buffer_accesses:
    a buffer made and used inside one fused kernel costs nothing, any other min(elements iterated x
    accesses, its size)), each buffer of a fused kernel bounded by what its parts count: for a fused
    kernel the scheduler takes the elements iterated as 1e9, so an indexed read fused in (an
    embedding's gather, cross-entropy's pick of the target's logit) is charged the whole buffer."""
    accesses = kernel.get_read_write_buffer_accesses(include_reads=True, include_writes=True)
    parts = [part for part in kernel.get_nodes() if part is not kernel]
    if not parts:
        return sum(accesses.values())
    bound = collections.Counter()
    for part in parts:
        bound.update(part.get_read_write_buffer_accesses(include_reads=True, include_writes=True))
    return sum(min(count, bound[name]) if name in bound else count for name, count in accesses.items())


def scheduled_kernels(graph, example_inputs, phase, gpu=None):
    """The graph's kernels as inductor lowers and schedules them (its post-grad passes, lowering and
    fusion: torch/_inductor/compile_fx.py up to code generation, which is not run): per kernel an Op
    of the bytes its scheduler counts (`_bytes`), the FLOPs of the matmul or attention an extern
    kernel runs. With `gpu` (a utils.devices.GPU) inductor schedules as on that GPU, Triton's
    fusion (utils/plan/inductor_cuda.py); without, as on this CPU (its C++ backend's rules)."""
    fake = detect_fake_mode(example_inputs)
    # a copy: the passes rewrite it; the plan runs the graph AOTAutograd made
    lowered, example_inputs = on_cuda(graph, example_inputs, fake) if gpu else (copy.deepcopy(graph), example_inputs)
    with cuda_scheduling(gpu) if gpu else contextlib.nullcontext():
        return _scheduled(lowered, example_inputs, phase, fake)


def _scheduled(lowered, example_inputs, phase, fake):
    from torch._inductor.compile_fx import _recursive_post_grad_passes
    from torch._inductor.debug import DebugContext
    from torch._inductor.fx_passes.replace_random import replace_random_passes
    from torch._inductor.graph import GraphLowering
    from torch._inductor.ir import MultiOutput
    from torch._inductor.scheduler import ExternKernelSchedulerNode
    from torch._inductor.virtualized import V

    with V.set_fake_mode(fake):
        # inductor's own RNG (a joint-graph pass compile_fx runs before the partition): dropout's noise
        # is generated inside the kernel that uses it, never stored
        replace_random_passes(lowered)
        _recursive_post_grad_passes(lowered, False)
    inductor = GraphLowering(lowered, example_inputs=example_inputs, shape_env=fake.shape_env,
                             is_backward=phase == "backward")
    kernels = []
    # the lowering of checkpointing's RNG replay reads the generator's real state (a real tensor)
    with DebugContext(), V.set_graph_handler(inductor), V.set_extern_kernel_nodes([]), V.set_fake_mode(fake), \
            mock.patch.object(fake, "allow_non_fake_inputs", True):
        inductor.run(*example_inputs)
        inductor._update_scheduler()
        for node in inductor.scheduler.nodes:
            flops, kind, dtype = 0, "memory", None
            # an extern kernel runs its matmul or attention; a MultiOutput only picks one of its outputs
            if isinstance(node, ExternKernelSchedulerNode) and not isinstance(node.node, MultiOutput):
                counted = [_fx_flops(origin) for origin in node.node.origins]
                flops = sum(f for f, _, _ in counted)
                kind, dtype = next(((k, d) for f, k, d in counted if f), ("memory", None))
            kernels.append(Op(node.get_name(), phase, kind, flops, _bytes(node), dtype or _dtype(node), True))
    return kernels


class _FusedInterpreter(torch.fx.Interpreter):
    """A compiled graph run op by op under the tracker, its fused intermediates untracked."""

    def __init__(self, module, tracker):
        super().__init__(module)
        self.tracker, self.kept = tracker, materialised(module.graph)

    def call_function(self, target, args, kwargs):
        if target in RNG_REPLAY:
            return RNG_REPLAY[target](*args, **kwargs)
        return super().call_function(target, args, kwargs)

    def run_node(self, node):
        if self.tracker is None or node in self.kept:
            return super().run_node(node)
        self.tracker.unmaterialised = True  # fused into its consumers: no memory of its own
        try:
            return super().run_node(node)
        finally:
            self.tracker.unmaterialised = False


class Graphs:
    """The compiled graphs' runner: each graph runs under `mode` (the plan's tracker, once it
    exists; none during the step that compiles), its fused intermediates untracked, and each run
    hands the tracker's timing recorder the graph's kernels as inductor schedules them."""

    def __init__(self, gpu=None):
        self.mode, self.gpu = None, gpu  # gpu: inductor schedules as on it (None: as on this CPU)
        self.graphed = False  # compiled for CUDA graphs (reduce-overhead): allocations from their pool

    def _runner(self, graph, example_inputs, phase):
        kernels = scheduled_kernels(graph, example_inputs, phase, self.gpu)

        def run(args):
            recorder = getattr(self.mode, "on_op", None)
            if recorder is not None:  # the step's time counts inductor's kernels, not the graph's ops
                recorder.ops.extend(kernels)
                recorder.in_graph = True
            # the tracker, where dynamo set it aside (compiled code runs it twice otherwise)
            active = self.mode is None or self.mode in _get_current_dispatch_mode_stack()
            pool = in_graph_pool(self.mode) if self.graphed and self.mode is not None else contextlib.nullcontext()
            try:
                with contextlib.nullcontext() if active else self.mode, pool:
                    return _FusedInterpreter(graph, self.mode).boxed_run(args)
            finally:
                if recorder is not None:
                    recorder.in_graph = False

        run._boxed_call = True  # AOTAutograd's boxed calling convention: the callee frees its inputs
        return run

    def backend(self, graph, example_inputs, **kwargs):
        from torch._inductor.compile_fx import select_decomp_table

        return aot_autograd(
            fw_compiler=functools.partial(self._runner, phase="forward"),
            bw_compiler=functools.partial(self._runner, phase="backward"), decompositions=select_decomp_table(),
            partition_fn=functools.partial(min_cut_rematerialization_partition, compiler="inductor"),
        )(graph, example_inputs)


@contextlib.contextmanager
def plan_compile(graphs):
    """Within it, torch.compile compiles for the plan (`graphs`: a Graphs), whatever was asked."""
    compile_ = torch.compile

    def planned(model, *args, mode=None, **kwargs):
        # each plan compiles afresh, at its own static shapes (a second plan of another batch in
        # the same process would otherwise get dynamic shapes: a GPU run compiles one batch)
        torch._dynamo.reset()
        graphs.graphed = mode in catalog.GRAPHED_COMPILE_MODES
        return compile_(model, backend=graphs.backend, dynamic=False)

    with mock.patch.object(torch, "compile", planned):
        yield


@contextlib.contextmanager
def quiet_global_hooks():
    """MemTracker's module hooks are global: a compiled model's call warns that they fire once
    more, for its wrapper. The planner resets its tracker per root call: nothing to warn of."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `torch.compile")
        yield
