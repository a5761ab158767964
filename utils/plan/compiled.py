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
`ignore_compile_internals`). So the saved activations are inductor's. Fusion is modelled,
and it is a model, not inductor's scheduler: a pointwise op's output (torch.Tag.pointwise)
is fused into its consumers and never materialised unless it leaves the graph (a saved
activation, a gradient, an output) or feeds an op inductor runs as a separate kernel (a
matmul, attention, a scatter: anything neither pointwise, a reduction nor a view); a view
passes that need on to the tensor it views; constants (full, zeros, iota) and a scatter into
one (inductor's scatter_upon_const_tensor) count as pointwise. Reductions and extern kernels
write their outputs. Not modelled: inductor's buffer reuse between kernels (the plan can be
high) and its realisation of a pointwise buffer that many kernels read (the plan can be low).
CUDA-graph modes (reduce-overhead, max-autotune) keep a private memory pool and stay refused.
"""

import contextlib
import functools
import warnings
from unittest import mock

import torch
import torch.fx
from functorch.compile import min_cut_rematerialization_partition
from torch._dynamo.backends.common import aot_autograd
from torch._prims.rng_prims import run_and_save_rng_state, run_with_rng_state
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from utils.plan.timing import is_view

APPROXIMATED = ("torch.compile: AOTAutograd's min-cut partition on inductor's decompositions (the saved activations "
                "inductor keeps), fusion modelled: pointwise intermediates not written unless they leave the graph or "
                "feed a matmul, attention or scatter")


aten, prims = torch.ops.aten, torch.ops.prims
# constants inductor computes inside the kernels that read them, never as buffers
FACTORIES = (aten.full.default, aten.zeros.default, aten.ones.default, aten.scalar_tensor.default, prims.iota.default)
SCATTERS = (aten.scatter.value, aten.scatter.src)


def _fusible(node):
    if node.op != "call_function":
        return False
    if node.target in FACTORIES:
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


def _value_bytes(node):
    value = node.meta.get("val") if hasattr(node, "meta") else None
    return value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0


def fused_reads(graph, kept):
    """{kernel node: bytes it reads}: a written node's kernel reads the written tensors (or the
    graph's inputs) its fused producers start from, not the producers' outputs."""
    reads = {}
    for node in graph.nodes:
        if node not in kept or node.op != "call_function":
            continue
        written, fused, todo = set(), set(), list(node.all_input_nodes)  # written: what the kernel reads
        while todo:
            source = todo.pop()
            if source in kept or source.op != "call_function":
                written.add(source)
            elif source not in fused:
                fused.add(source)
                todo.extend(source.all_input_nodes)
        reads[node] = sum(_value_bytes(n) for n in written)
    return reads


# checkpointing's recompute inside a compiled graph replays its random ops from a saved RNG state:
# two higher-order ops, run here as their fake-tensor rules do (torch/_prims/rng_prims.py), so the
# op inside reaches the tracker as any other op (a HOP has no rule for a dispatch mode of ours)
RNG_REPLAY = {
    run_and_save_rng_state: lambda op, *args, **kwargs: (torch.get_rng_state(), op(*args, **kwargs)),
    run_with_rng_state: lambda state, op, *args, **kwargs: op(*args, **kwargs),
}


class _FusedInterpreter(torch.fx.Interpreter):
    def call_function(self, target, args, kwargs):
        if target in RNG_REPLAY:
            return RNG_REPLAY[target](*args, **kwargs)
        return super().call_function(target, args, kwargs)

    def __init__(self, module, tracker):
        super().__init__(module)
        self.tracker, self.kept = tracker, materialised(module.graph)
        self.reads = fused_reads(module.graph, self.kept)
        self.recorder = getattr(tracker, "on_op", None)

    def run_node(self, node):
        if self.tracker is None:
            return super().run_node(node)
        if node in self.kept:
            if self.recorder is not None:
                self.recorder.fused_reads, self.recorder.in_graph = self.reads.get(node), True
            try:
                return super().run_node(node)
            finally:
                if self.recorder is not None:
                    self.recorder.fused_reads, self.recorder.in_graph = None, False
        self.tracker.unmaterialised = True  # fused into its consumers: no memory of its own, no kernel
        try:
            return super().run_node(node)
        finally:
            self.tracker.unmaterialised = False


class Graphs:
    """The compiled graphs' runner: each graph runs under `mode` (the plan's tracker, once it
    exists; none during the step that compiles), its fused intermediates untracked."""

    def __init__(self):
        self.mode = None

    def _runner(self, graph, example_inputs):
        def run(args):
            # the tracker, where dynamo set it aside (compiled code runs it twice otherwise)
            active = self.mode is None or self.mode in _get_current_dispatch_mode_stack()
            with contextlib.nullcontext() if active else self.mode:
                return _FusedInterpreter(graph, self.mode).boxed_run(args)

        run._boxed_call = True  # AOTAutograd's boxed calling convention: the callee frees its inputs
        return run

    def backend(self, graph, example_inputs, **kwargs):
        from torch._inductor.compile_fx import select_decomp_table

        return aot_autograd(
            fw_compiler=self._runner, bw_compiler=self._runner, decompositions=select_decomp_table(),
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
