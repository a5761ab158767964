"""torch.compile planned: what AOTAutograd keeps for backward, traced on fake tensors.

Inductor's memory is set by two things: which activations the forward saves for backward
(AOTAutograd's partition of the joint forward + backward graph: inductor's min-cut
rematerialisation partitioner, which recomputes cheap ops in backward instead of saving
them) and how its kernels use buffers (fusion: a chain of pointwise ops writes one output,
no intermediates). The plan compiles the model as inductor does up to its lowering: its
decompositions, its joint-graph passes and min-cut partitioner (compile_fx.partition_fn; an
inference graph, an optimizer's step, gets the passes alone), then runs each graph op by op
(torch.fx.Interpreter) with the tracker entered around it (as `aot_eager_decomp_partition_with_mode`
does: dynamo itself runs with no dispatch mode on the stack, the tracker saying
`ignore_compile_internals`). So the saved activations are inductor's.

Which values take memory, and the step's time, are inductor's answers too: each graph is lowered
and scheduled by inductor itself (utils/plan/scheduled.py: its post-grad passes, lowering and
fusion, no code generated). A node's value counts when a buffer inductor's kernels write comes
from it (read outside the kernel that makes it, or leaving the graph; not a mutation written into
its input), and lives until the last kernel reading it has run, a graph input too; the graph's ops
run in the order inductor's kernels compute them (a kernel computes some FX nodes far from their
place in the graph); the timing counts inductor's
kernels with the bytes its scheduler says each moves. For a plan with a GPU inductor schedules as
on that GPU, by Triton's rules (utils/plan/inductor_cuda.py: the graph's fake tensors relabelled
to CUDA); a plan of this CPU's step, by its C++ backend's. Where the lowering covers no node of
that name (a post-grad pass replaced it; an op of several outputs) a fusion rule decides: a
pointwise op's output (torch.Tag.pointwise) is fused into its consumers and never materialised
unless it leaves the graph or feeds an op inductor runs as a separate kernel (a matmul,
attention, a scatter: anything neither pointwise, a reduction nor a view); a view passes that
need on to the tensor it views; constants (full, zeros, iota), a scatter into one (inductor's
scatter_upon_const_tensor) and an indirect load (gather, index) count as pointwise. Inductor's
reuse of a dead buffer for a new one of its size frees and allocates as the plan does; a kernel's
output written into a buffer it reads that dies there (SchedulerNode.decide_inplace_update, asked
of inductor's scheduler: utils/plan/scheduled.py) is held in that buffer's storage. Checked
against the wrapper inductor generates for each graph (`make codegen_check`, utils/plan/
codegen_check.py). In reduce-overhead mode each graph's allocations come from the CUDA graphs'
private pool (utils/plan/cudagraphs.py).
"""

import collections
import contextlib
import dataclasses
import functools
import warnings
from unittest import mock

import torch
import torch.fx
from torch._dynamo.backends.common import aot_autograd
from torch._guards import detect_fake_mode
from torch._prims.rng_prims import run_and_save_rng_state, run_with_rng_state
from torch._prims_common import compute_required_storage_length
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from utils import catalog
from utils.plan.cudagraphs import in_graph_pool
from utils.plan.scheduled import frees_as_scheduled, in_kernel_order, scheduled_kernels
from utils.plan.timing import is_view

APPROXIMATED = ("torch.compile: inductor's joint-graph passes and min-cut partition (the saved activations it keeps), "
                 "its lowering and scheduling as on the planned GPU (the buffers its kernels write, in their order, "
                 "each held until the last kernel reading it)")


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
    """The nodes whose outputs the fusion rule has inductor write to memory (the module's docstring)."""
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


def kept(graph, schedule):
    """The nodes whose values the plan counts: those inductor writes to memory (a Schedule), and where
    its lowering covered no node of that name (post-grad passes replace some; an op of several
    outputs), those the fusion rule above keeps."""
    modelled = materialised(graph)
    return {node for node in graph.nodes
            if node.name in schedule.written or (node.name not in schedule.lowered and node in modelled)}


# checkpointing's recompute inside a compiled graph replays its random ops from a saved RNG state:
# two higher-order ops, run here as their fake-tensor rules do (torch/_prims/rng_prims.py), so the
# op inside reaches the tracker as any other op (a HOP has no rule for a dispatch mode of ours)
RNG_REPLAY = {
    run_and_save_rng_state: lambda op, *args, **kwargs: (torch.get_rng_state(), op(*args, **kwargs)),
    run_with_rng_state: lambda state, op, *args, **kwargs: op(*args, **kwargs),
}


class AsScheduled(collections.namedtuple("AsScheduled", "module kept frees inplace")):
    """How the plan runs a compiled graph, from its Schedule: the graph in its kernels' order, the nodes whose
    values count, the values freed after each node, and {node name: the name of the node whose buffer inductor
    writes its value into}."""


def as_scheduled(module, schedule):
    """`module` (a compiled graph) as inductor scheduled it (`schedule`: a Schedule), an AsScheduled."""
    module = in_kernel_order(module, schedule.positions)
    frees = frees_as_scheduled(module, schedule.written | schedule.inputs)
    return AsScheduled(module, kept(module.graph, schedule), frees, schedule.inplace)


class _FusedInterpreter(torch.fx.Interpreter):
    """A compiled graph run op by op under the tracker (an AsScheduled): only the kept nodes' allocations
    tracked, each value freed as its frees say, a value inductor writes into a dying buffer it reads held in
    that buffer's storage."""

    def __init__(self, scheduled, tracker):
        super().__init__(scheduled.module)
        self.tracker, self.kept, self.user_to_last_uses = tracker, scheduled.kept, scheduled.frees
        self.inplace, self.by_name = scheduled.inplace, {node.name: node for node in scheduled.module.graph.nodes}

    def call_function(self, target, args, kwargs):
        if target in RNG_REPLAY:
            return RNG_REPLAY[target](*args, **kwargs)
        return super().call_function(target, args, kwargs)

    def _written_into(self, node):
        """The live value whose storage inductor writes `node`'s into, where it holds it (same dtype, room)."""
        buffer = self.env.get(self.by_name.get(self.inplace.get(node.name)))
        value = node.meta.get("val")
        if not isinstance(buffer, torch.Tensor) or not isinstance(value, torch.Tensor) or buffer.dtype != value.dtype:
            return None
        extent = compute_required_storage_length(value.shape, value.stride(), 0) * value.element_size()
        return buffer if extent <= buffer.untyped_storage().nbytes() else None

    def run_node(self, node):
        into = self._written_into(node) if node in self.kept and node.name in self.inplace else None
        if self.tracker is None or (node in self.kept and into is None):
            return super().run_node(node)
        self.tracker.unmaterialised = True  # fused into its consumers, or written into a buffer it reads
        try:
            value = super().run_node(node)
            return value if into is None else into.as_strided(value.shape, value.stride(), 0)
        finally:
            self.tracker.unmaterialised = False


class Graphs:
    """The compiled graphs' runner: each graph runs under `mode` (the plan's tracker, once it
    exists; none during the step that compiles), its fused intermediates untracked, and each run
    hands the tracker's timing recorder the graph's kernels as inductor schedules them."""

    def __init__(self, gpu=None):
        self.mode, self.gpu = None, gpu  # gpu: inductor schedules as on it (None: as on this CPU)

    def _runner(self, graph, example_inputs, phase, graphed):
        schedule = scheduled_kernels(graph, example_inputs, phase, self.gpu, replayed=graphed)
        return self._run(as_scheduled(graph, schedule), schedule.kernels, graphed)

    def _run(self, scheduled, kernels, graphed):
        """The callable AOTAutograd calls for a graph (an AsScheduled; `kernels`: its Schedule's)."""

        def run(args):
            recorder = getattr(self.mode, "on_op", None)
            if recorder is not None:  # the step's time counts inductor's kernels, not the graph's ops
                # in the phase running it: an inference graph (an optimizer's step) in whichever calls it, a
                # forward rerun by a checkpoint around the compiled block (blocks_in_checkpoint) in backward
                recorder.ops.extend(dataclasses.replace(kernel, phase=self.mode.phase) for kernel in kernels)
                recorder.in_graph = True
            # the tracker, where dynamo set it aside (compiled code runs it twice otherwise)
            active = self.mode is None or self.mode in _get_current_dispatch_mode_stack()
            # compiled for CUDA graphs (reduce-overhead): allocations from their pool
            pool = in_graph_pool(self.mode) if graphed and self.mode is not None else contextlib.nullcontext()
            try:
                with contextlib.nullcontext() if active else self.mode, pool:
                    return _FusedInterpreter(scheduled, self.mode).boxed_run(args)
            finally:
                if recorder is not None:
                    recorder.in_graph = False

        run._boxed_call = True  # AOTAutograd's boxed calling convention: the callee frees its inputs
        return run

    def backend(self, graph, example_inputs, graphed=False, **kwargs):
        from torch._inductor.compile_fx import select_decomp_table

        # inductor's partition (compile_fx.partition_fn): its joint-graph passes (a scatter into a constant
        # made pointwise, its own RNG, ...) then the min-cut partitioner. An input mutated under no_grad
        # (an optimizer's step) stays a copy_ in the graph, written in place (keep_inference_input_mutations)
        runner = functools.partial(self._runner, graphed=graphed)
        return aot_autograd(
            fw_compiler=functools.partial(runner, phase="forward"),
            bw_compiler=functools.partial(runner, phase="backward"),
            inference_compiler=functools.partial(self._inference, runner), decompositions=select_decomp_table(),
            keep_inference_input_mutations=True, partition_fn=partition,
        )(graph, example_inputs)

    @staticmethod
    def _inference(runner, graph, example_inputs):
        return runner(joint_passed(graph, example_inputs), example_inputs, phase="inference")


def partition(graph, joint_inputs, **kwargs):
    """Inductor's partition (compile_fx.partition_fn: its joint-graph passes, then the min-cut
    partitioner), under the fake mode its RNG pass asks for, as compile_fx sets it."""
    from torch._inductor.compile_fx import partition_fn
    from torch._inductor.virtualized import V

    with V.set_fake_mode(detect_fake_mode(joint_inputs)):
        return partition_fn(graph, joint_inputs, **kwargs)


def joint_passed(graph, example_inputs):
    """An inference graph (no partition) after inductor's joint-graph passes, which compile_fx runs on it."""
    from torch._inductor.compile_fx import _recursive_joint_graph_passes
    from torch._inductor.virtualized import V

    with V.set_fake_mode(detect_fake_mode(example_inputs)):
        return _recursive_joint_graph_passes(graph)


@contextlib.contextmanager
def plan_compile(graphs):
    """Within it, torch.compile compiles for the plan (`graphs`: a Graphs), whatever was asked: the
    model as it is set up, and what an optimizer compiles as it steps (torchao's, per parameter)."""
    compile_ = torch.compile
    # each plan compiles afresh, at its own static shapes (a second plan of another batch in the same
    # process would otherwise get dynamic shapes: a GPU run compiles one batch)
    torch._dynamo.reset()
    # one backend object per mode: dynamo reuses what it compiled for the same one (torchao compiles
    # its step function again at every call)
    backends = {graphed: functools.partial(graphs.backend, graphed=graphed) for graphed in (False, True)}

    def planned(model, *args, mode=None, **kwargs):
        return compile_(model, backend=backends[mode in catalog.GRAPHED_COMPILE_MODES], dynamic=False)

    with mock.patch.object(torch, "compile", planned):
        yield


@contextlib.contextmanager
def quiet_global_hooks():
    """MemTracker's module hooks are global: a compiled model's call warns that they fire once
    more, for its wrapper. The planner resets its tracker per root call: nothing to warn of."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `torch.compile")
        yield
