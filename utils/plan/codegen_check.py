"""`make codegen_check`: the planner's memory of each compiled graph against the code inductor
generates for it, on a machine without a GPU.

The planner counts a compiled graph's memory from inductor's lowering and scheduling (utils/plan/
scheduled.py) and runs the graph's ops in the order inductor's kernels compute them (compiled.py).
Inductor's own answer is the wrapper it generates: each buffer's allocation (`empty_strided_cuda`),
reuse of a dead buffer (`bufB = bufA; del bufA  # reuse`), view (`reinterpret_tensor`) and free
(`del`), in the order the kernels run (torch/_inductor/codegen/wrapper.py). With Triton importable
(it ships with CUDA builds of torch; `pip install triton` on a CPU one), each graph of the plan is
lowered and its wrapper generated as for the planned GPU (no kernel is compiled or run), and the
peak of the buffers it holds is compared with the planner's peak over the same graph's ops, the
graph's inputs (weights, saved activations) counted in both and freed as each frees them.
"""

import re
from unittest import mock

import torch
from torch._guards import detect_fake_mode
from torch._prims_common import compute_required_storage_length
from torch.multiprocessing.reductions import StorageWeakRef

from utils import checks
from utils.measure.memory import PeakTracker
from utils.plan import compiled
from utils.plan.inductor_cuda import cuda_scheduling, on_cuda
from utils.plan.scheduled import lowered_by_inductor, scheduled_kernels

MIB = 2**20
ALLOCATION = re.compile(r"(\w+) = empty_strided_\w+\(\(([^)]*)\), \(([^)]*)\), torch\.(\w+)\)$")
ASSIGNMENT = re.compile(r"(buf\d+|workspace_\d+) = (.*)$")
SOURCE = re.compile(r"(?:reinterpret_tensor\()?(\w+)(\[\d+\])?")


def _strided_bytes(size, stride, dtype):
    """Bytes of a strided buffer, from the wrapper's text: the furthest element its strides reach, plus one."""
    sizes, strides = ([int(x) for x in text.split(",") if x.strip()] for text in (size, stride))
    return compute_required_storage_length(sizes, strides, 0) * getattr(torch, dtype).itemsize


class WrapperMemory:
    """The buffers a generated wrapper's `call` holds, statement by statement, its inputs among them
    (`input_storages`, in order: (storage, bytes), views of one storage held once): `peak` bytes.
    `extern_bytes(name)`: the bytes of a buffer an extern kernel allocates itself (None: a tuple,
    whose items it picks next)."""

    def __init__(self, input_storages, extern_bytes):
        self.input_storages, self.extern_bytes = input_storages, extern_bytes
        self.storage, self.refs, self.size = {}, {}, {}
        self.live = self.peak = 0

    def _allocate(self, name, nbytes):
        key = object()
        self.storage[name], self.size[key], self.refs[key] = key, nbytes, 1
        self.live += nbytes
        self.peak = max(self.peak, self.live)

    def _alias(self, name, other):
        self.storage[name] = self.storage[other]
        self.refs[self.storage[name]] += 1

    def _delete(self, name):
        key = self.storage.pop(name, None)
        if key is not None:
            self.refs[key] -= 1
            if not self.refs[key]:
                self.live -= self.size[key]

    def run(self, call):
        """Follow `call`'s body (the generated source from `def call`)."""
        for line in call.splitlines():
            line = line.split("  #")[0].strip()
            if line.endswith("= args"):  # the graph's inputs: freed as it goes (the caller holds none)
                first = {}
                for name, (storage, nbytes) in zip(line[:-len("= args")].split(","), self.input_storages):
                    if storage in first:
                        self._alias(name.strip(), first[storage])
                    else:
                        first[storage] = name.strip()
                        self._allocate(name.strip(), nbytes)
            elif not line.startswith("#"):
                for statement in line.split("; "):
                    self._statement(statement)
        return self

    def _statement(self, statement):
        if statement.startswith("del "):
            return self._delete(statement[4:].strip())
        allocation = ALLOCATION.match(statement)
        if allocation:
            return self._allocate(allocation[1], _strided_bytes(*allocation.groups()[1:]))
        assignment = ASSIGNMENT.match(statement)
        if not assignment or assignment[1] in self.storage:
            return None
        name, value = assignment.groups()
        source = SOURCE.match(value)
        if ".sum(" in value:  # a combo kernel's workspace reduced: a small new tensor
            return self._allocate(name, 0)
        if source and source[1] in self.storage and not source[2]:
            return self._alias(name, source[1])  # a reuse or a view of a live buffer
        if value.startswith(("torch.ops.", "extern_kernels.")) or (source and source[2]):
            nbytes = self.extern_bytes(name)  # an extern kernel's own output, or an item of its tuple
            return self._allocate(name, nbytes) if nbytes is not None else None
        return None


def generated_peak(graph, example_inputs, phase, gpu):
    """The peak bytes of the buffers inductor's generated wrapper for `graph` allocates, as for `gpu`."""
    from torch._dynamo import device_interface
    from torch._inductor.ir import MultiOutputLayout

    fake = detect_fake_mode(example_inputs)
    moved, inputs = on_cuda(graph, example_inputs, fake)
    # the kernel's source is hashed with Triton's backend, which asks the CUDA driver for its target
    with cuda_scheduling(gpu), mock.patch.object(torch.utils._triton, "triton_hash_with_backend", lambda: "planned"):
        device_interface.register_interface_for_device("cuda:0", device_interface.CudaInterface)
        with lowered_by_inductor(moved, inputs, phase, fake) as lowering:
            code = lowering.codegen()[0]
            code = getattr(code, "value", code)

            def extern_bytes(name):
                buffer = lowering.name_to_buffer.get(name)
                if buffer is None or isinstance(buffer.layout, MultiOutputLayout):
                    return None
                return int(buffer.layout.storage_size()) * buffer.layout.dtype.itemsize

            storages = [(StorageWeakRef(x.untyped_storage()), x.untyped_storage().nbytes())
                        if isinstance(x, torch.Tensor) else (object(), 0) for x in example_inputs]
            return WrapperMemory(storages, extern_bytes).run(code[code.index("def call("):]).peak


def _own_inputs(example_inputs):
    """Copies of the graph's inputs on storages of their own, views of one storage still sharing one
    (made under the tracker: its first allocations): the graph frees them as it goes (the caller's
    stay held)."""
    storages = {}

    def copied(x):
        if not isinstance(x, torch.Tensor):
            return x
        nbytes = x.untyped_storage().nbytes()
        base = storages.setdefault(StorageWeakRef(x.untyped_storage()),
                                   torch.empty(nbytes, dtype=torch.uint8, device=x.device))
        return base.view(x.dtype).as_strided(x.shape, x.stride(), x.storage_offset())

    return [copied(x) for x in example_inputs]


def planned_peak(scheduled, example_inputs):
    """The peak bytes the planner's run of a compiled graph (a compiled.AsScheduled) allocates, under its tracker."""
    tracker = PeakTracker(record=True)
    with detect_fake_mode(example_inputs), tracker:
        compiled._FusedInterpreter(scheduled, tracker).boxed_run(_own_inputs(example_inputs))
    # summed from its events: the tracker's peak snapshot is deep-copied, which a symbolic size refuses
    live = peak = 0
    for event in tracker.events:
        live += event[1]
        peak = max(peak, live)
    return peak


class Compared(compiled.Graphs):
    """The plan's compiled graphs, each compared as it is compiled: `rows` of (phase, FX nodes, generated
    peak MiB, planned peak MiB)."""

    def __init__(self, gpu):
        super().__init__(gpu)
        self.rows = []

    def _runner(self, graph, example_inputs, phase, graphed):
        generated = generated_peak(graph, example_inputs, phase, self.gpu)
        schedule = scheduled_kernels(graph, example_inputs, phase, self.gpu, replayed=graphed)
        scheduled = compiled.as_scheduled(graph, schedule)
        planned = planned_peak(scheduled, example_inputs)
        # a size of a graph of symbolic shapes: its value where its expression has one
        sizes = [int(value) / MIB if str(value).isdigit() else None for value in (generated, planned)]
        self.rows.append((phase, len(graph.graph.nodes), *sizes))
        return self._run(scheduled, schedule.kernels, graphed)


def require_triton():
    from torch.utils._triton import has_triton_package

    if not has_triton_package():
        raise checks.BadInput("codegen_check needs Triton, inductor's GPU code generator: pip install triton "
                              "(CUDA builds of torch ship it)")


def check(names, given):
    """Print, per technique of `names` at the settings' model and shapes on GPU=, each compiled graph's
    peak as inductor's generated wrapper allocates it and as the planner counts it; 0."""
    from utils.plan import planner
    from utils.plan.config import load_config, load_target
    from utils.techniques import setup_of

    require_triton()
    target = load_target(given)
    print(f"codegen_check: each compiled graph's memory at its peak (its inputs with it, freed as it goes), as "
          f"inductor {torch.__version__} generates its wrapper for {target.gpu.name} and as the planner counts it "
          "(MiB)\n")
    print("| technique | graph | FX nodes | generated | planned | error |\n| --- | --- | --- | --- | --- | --- |")
    for name in names:
        cfg = load_config(name, given)
        compared = []

        def graphs(gpu, compared=compared):
            compared.append(Compared(gpu))
            return compared[-1]

        try:
            planner.plan(setup_of(name)[1], cfg, target, graphs=graphs)
        except planner.NotModelled as why:
            print(f"| `{name}` | not modelled: {why} | | | | |")
            continue
        rows = compared[-1].rows if compared else []
        for phase, nodes, generated, planned in rows:
            if generated is None or planned is None:
                print(f"| `{name}` | {phase} | {nodes:,} | symbolic shapes | | |", flush=True)
                continue
            error = f"{planned / generated - 1:+.1%}" if generated else "–"
            print(f"| `{name}` | {phase} | {nodes:,} | {generated:,.1f} | {planned:,.1f} | {error} |", flush=True)
        if not rows:
            print(f"| `{name}` | no compiled graph | | | | |")
    return 0
