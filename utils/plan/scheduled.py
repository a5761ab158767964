"""A compiled graph as inductor schedules it, on a torch with no GPU: its post-grad passes,
lowering and fusion (torch/_inductor/compile_fx.py up to code generation, which is not run).
Two answers come of it: the kernels the step's time counts (utils/plan/timing.py), and the
buffers those kernels write, the memory utils/plan/compiled.py counts for a compiled graph."""

import collections
import contextlib
import copy
import functools
import heapq
import math
import types
from unittest import mock

import torch
from torch._guards import detect_fake_mode

from utils.plan.inductor_cuda import cuda_scheduling, on_cuda
from utils.plan.timing import ATTENTION_OPS, Op, attention_flops, counted_flops


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


class Schedule(collections.namedtuple("Schedule", "kernels written lowered positions inputs inplace")):
    """A graph as inductor schedules it: its kernels (Ops), the FX nodes whose values its kernels
    write to memory (by name, each with the names of the FX nodes of the kernels reading it), the
    names of those its lowering covered (each single-tensor node), the graph's inputs with the FX
    nodes of the kernels reading each (its wrapper frees one after the last), and where each is first
    computed: the index of its kernel in the order inductor runs them (a kernel computes an FX node
    far from its place in the graph: the partitioner puts what backward needs of a layer norm, its
    rsqrt over the width, at the forward's end, inductor computes it in the layer norm's kernel), and the
    values a kernel writes into a buffer it reads that dies there ({FX node: the FX node of the buffer})."""


def scheduled_kernels(graph, example_inputs, phase, gpu=None, replayed=False):
    """The graph as inductor lowers and schedules it (its post-grad passes, lowering and fusion:
    torch/_inductor/compile_fx.py up to code generation, which is not run), a Schedule: per kernel
    an Op of the bytes its scheduler counts (`_bytes`), the FLOPs of the matmul or attention an
    extern kernel runs; the buffers it writes (`_written`). `phase`: forward, backward or inference
    (a graph under no_grad: an optimizer's step, lowered as compile_fx lowers one); `replayed`: its
    kernels replay as a CUDA graph. With `gpu` (a utils.devices.GPU) inductor schedules as on that
    GPU, Triton's fusion (utils/plan/inductor_cuda.py); without, as on this CPU (its C++ backend's)."""
    fake = detect_fake_mode(example_inputs)
    # a copy: the passes rewrite it; the plan runs the graph AOTAutograd made
    lowered, example_inputs = on_cuda(graph, example_inputs, fake) if gpu else (copy.deepcopy(graph), example_inputs)
    with cuda_scheduling(gpu) if gpu else contextlib.nullcontext():
        return _scheduled(lowered, example_inputs, phase, fake, replayed)


@contextlib.contextmanager
def lowered_by_inductor(graph, example_inputs, phase, fake):
    """Within it, `graph` (a copy it may rewrite) as inductor lowers it: its post-grad passes run and its
    GraphLowering run and entered, yielded (compile_fx's steps before scheduling and code generation)."""
    from torch._inductor.compile_fx import _recursive_post_grad_passes
    from torch._inductor.debug import DebugContext
    from torch._inductor.graph import GraphLowering
    from torch._inductor.virtualized import V

    inference = phase == "inference"
    with V.set_fake_mode(fake):  # the joint-graph passes ran before the partition (compiled.Graphs)
        _recursive_post_grad_passes(graph, inference)
    inductor = GraphLowering(graph, example_inputs=example_inputs, shape_env=fake.shape_env,
                             is_inference=inference, is_backward=phase == "backward")
    # the lowering of checkpointing's RNG replay reads the generator's real state (a real tensor)
    with DebugContext(), V.set_graph_handler(inductor), V.set_extern_kernel_nodes([]), V.set_fake_mode(fake), \
            mock.patch.object(fake, "allow_non_fake_inputs", True):
        inductor.run(*example_inputs)
        yield inductor


def _scheduled(lowered, example_inputs, phase, fake, replayed):
    from torch._inductor.ir import MultiOutput
    from torch._inductor.scheduler import ExternKernelSchedulerNode

    kernels = []
    with lowered_by_inductor(lowered, example_inputs, phase, fake) as inductor:
        inductor._update_scheduler()
        for node in inductor.scheduler.nodes:
            flops, kind, dtype = 0, "memory", None
            # an extern kernel runs its matmul or attention; a MultiOutput only picks one of its outputs
            if isinstance(node, ExternKernelSchedulerNode) and not isinstance(node.node, MultiOutput):
                counted = [_fx_flops(origin) for origin in node.node.origins]
                flops = sum(f for f, _, _ in counted)
                kind, dtype = next(((k, d) for f, k, d in counted if f), ("memory", None))
            kernels.append(Op(node.get_name(), phase, kind, flops, _bytes(node), dtype or _dtype(node), True,
                              replayed=replayed))
        written = _written(inductor)
        return Schedule(kernels, *written, _inplace(inductor, written[0]))


def _written(inductor):
    """({name of each FX node whose value inductor's kernels write to memory: the FX nodes of the
    kernels that read it}, names of the single-tensor nodes its lowering covered, {name: index of
    the first kernel computing it}, {graph input: the FX nodes of the kernels reading it}). A buffer is
    written unless every reader is in the kernel that makes it (Scheduler.can_buffer_be_removed_through_fusion,
    the test its code generation removes buffers by) or it owns no memory: a mutation writes into
    its input, a concatenation's part into the concatenation (NonOwningLayout). The lowering
    realises buffers the plan's fusion rule cannot see (ir.py, StorageBox.mark_reuse: a pointwise
    value read by several kernels through more than config.realize_reads_threshold loads) and fuses
    some it keeps (a reduction into its consumer; an out-of-place copy into the input it is copied
    back to). A buffer lives until the last kernel that reads it has run (compiled.as_scheduled runs
    the graph in its kernels' order, a kernel's FX nodes together). Not counted: a buffer with no FX
    node of its own (a split reduction's partial results: small), and an extern kernel's copy of an
    input it needs in another layout (ExternKernel.copy_input), which takes its input's node."""
    from torch._inductor.ir import MultiOutputLayout, MutationLayoutSHOULDREMOVE, NoneLayout, NonOwningLayout

    scheduler, written, lowered, positions, inputs = inductor.scheduler, {}, set(), {}, {}
    kernel_of = {part.get_name(): node for node in scheduler.nodes for part in node.get_nodes()}

    def origins(kernel):  # the FX nodes a kernel computes
        return {origin for part in kernel.get_nodes() if part.node is not None for origin in part.node.origins}

    for index, node in enumerate(scheduler.nodes):
        inside = {part.get_name() for part in node.get_nodes()}
        lowered.update(origin.name for origin in origins(node) if isinstance(origin.meta.get("val"), torch.Tensor))
        for origin in origins(node):
            positions.setdefault(origin.name, index)
        for read in node.read_writes.reads:
            if read.name in inductor.graph_inputs:
                inputs.setdefault(read.name, set()).update(fx.name for fx in origins(node))
        for buffer in node.get_outputs():
            origin = getattr(buffer.node, "origin_node", None)
            if (origin is None or isinstance(buffer.node.layout, (MultiOutputLayout, MutationLayoutSHOULDREMOVE,
                                                                   NonOwningLayout, NoneLayout))
                    or buffer.get_name() in inductor.removed_buffers
                    or scheduler.can_buffer_be_removed_through_fusion(buffer.get_name(), inside)):
                continue
            readers = (kernel_of.get(user.get_name()) for user in buffer.users if not user.is_weak)
            written.setdefault(origin.name, set()).update(
                fx.name for kernel in readers if kernel is not None for fx in origins(kernel))
    return written, lowered, positions, inputs


def in_kernel_order(module, positions):
    """A copy of `module` whose nodes run in the order inductor's kernels compute them (`positions`:
    Schedule.positions), the graph's own order among nodes of one kernel and for nodes no kernel
    computes (placeholders first, a view or an unlowered node right after its inputs). Its values
    are fake: only the order of allocations and frees changes."""
    nodes, key = list(module.graph.nodes), {}
    for node in nodes:
        first = -1 if node.op in ("placeholder", "get_attr") else math.inf if node.op == "output" else None
        key[node] = first if first is not None else positions.get(
            node.name, max((key[a] for a in node.all_input_nodes), default=-1))
    index = {node: i for i, node in enumerate(nodes)}
    waiting = {node: len(node.all_input_nodes) for node in nodes}
    ready = [(key[node], index[node]) for node in nodes if not waiting[node]]
    heapq.heapify(ready)
    graph, copied = torch.fx.Graph(), {}
    while ready:
        node = nodes[heapq.heappop(ready)[1]]
        copied[node] = graph.node_copy(node, copied.__getitem__)
        for user in node.users:
            waiting[user] -= 1
            if not waiting[user]:
                heapq.heappush(ready, (key[user], index[user]))
    return torch.fx.GraphModule(module, graph)


def frees_as_scheduled(module, readers):
    """torch.fx.Interpreter's user_to_last_uses for `module` (the values to free after each node), a
    value inductor writes or a graph input (`readers`: Schedule.written and Schedule.inputs, the FX
    nodes of the kernels reading each) freed after the last FX node of the last kernel that reads it
    instead of its last FX reader: a kernel fusing two values' producers makes both before either is
    read, and holds what it reads until it has written what it makes."""
    frees = torch.fx.Interpreter(module).user_to_last_uses
    nodes = list(module.graph.nodes)
    order = {node.name: i for i, node in enumerate(nodes)}
    for user, values in list(frees.items()):
        for value in list(values):
            release = max((order[name] for name in readers.get(value.name, ()) if name in order), default=-1)
            if release > order[user.name]:
                values.remove(value)
                frees.setdefault(nodes[release], []).append(value)
    return frees


class _InplaceDecisions:
    """The kernel handler SchedulerNode.decide_inplace_update records its decisions in (its `args`)."""

    def __init__(self):
        self.args, self.inplace_update_buffers, self.pairs = self, {}, []

    def make_inplace(self, input_name, output_name):
        self.pairs.append((input_name, output_name))


def _inplace(inductor, written):
    """{FX node: FX node whose buffer it is written into} where inductor's code generation writes a kernel's
    output into a buffer the kernel reads and is its last reader (SchedulerNode.decide_inplace_update: the same
    dtype and size, one remaining use), asked node by node in the kernels' order as codegen asks, the
    operations before it completed; only between buffers the plan counts (`written`, graph inputs)."""
    from torch._inductor.codegen.wrapper import PythonWrapperCodegen
    from torch._inductor.scheduler import SchedulerNode
    from torch._inductor.virtualized import V

    scheduler, decisions = inductor.scheduler, _InplaceDecisions()
    # the wrapper's reuse test reads its buffers freed so far: none that a later kernel still reads
    wrapper = types.SimpleNamespace(freed=set())
    wrapper.can_reuse = functools.partial(PythonWrapperCodegen.can_reuse, wrapper)
    with V.set_kernel_handler(decisions), mock.patch.object(inductor, "wrapper_code", wrapper):
        for node in scheduler.nodes:
            for part in node.get_nodes():
                if isinstance(part, SchedulerNode):
                    part.decide_inplace_update()
            scheduler.completed_operations.update(node.get_operation_names())
    scheduler.completed_operations.clear()

    def fx_name(name):  # the FX node of a buffer the plan counts, or the graph input of that name
        if name in inductor.graph_inputs:
            return name
        buffer = scheduler.name_to_buf.get(name)
        origin = getattr(buffer.node, "origin_node", None) if buffer is not None else None
        return origin.name if origin is not None and origin.name in written else None

    pairs = ((fx_name(read), fx_name(out)) for read, out in decisions.pairs)
    return {out: read for read, out in pairs if read is not None and out is not None}
