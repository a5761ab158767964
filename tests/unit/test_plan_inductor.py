"""A compiled graph's step time counts inductor's own kernels: the bytes its scheduler says each
moves (utils/plan/scheduled.py: scheduled_kernels), held to the golden counts of PyTorch's
test/inductor/test_perf.py (elements moved, fp32 inputs; there on CUDA), scheduled as on this CPU and as on
an H100 (utils/plan/inductor_cuda.py)."""

import pytest
import torch
from functorch.compile import make_boxed_func
from torch._dynamo.backends.common import aot_autograd
from torch._inductor.compile_fx import select_decomp_table

from utils import devices
from utils.plan import compiled, scheduled

SCHEDULINGS = {"cpu": None, "h100": devices.by_key("h100-sxm")}


def count_numel(f, *inputs, train=False, gpu=None):
    """Elements inductor's kernels read and write for `f` (forward, and with `train` backward too)."""
    kernels = []

    def compiler(phase):
        def compile_(graph, example_inputs):
            kernels.extend(scheduled.scheduled_kernels(graph, example_inputs, phase, gpu).kernels)
            return make_boxed_func(graph.forward)

        return compile_

    backend = aot_autograd(fw_compiler=compiler("forward"), bw_compiler=compiler("backward"),
                           inference_compiler=lambda graph, inputs: compiler("forward")(
                               compiled.joint_passed(graph, inputs), inputs),
                           decompositions=select_decomp_table(), partition_fn=compiled.partition)  # the plan's
    torch._dynamo.reset()
    out = torch.compile(f, backend=backend)(*inputs)
    if train:
        sum(o.mean() for o in (out if isinstance(out, tuple) else (out,))).backward()
    return sum(kernel.bytes for kernel in kernels) // 4


def T(*size, grad=False):
    return torch.randn(size, requires_grad=grad)


def _cos_mm_cos(x):
    x = x.cos()
    x = torch.mm(x, x)
    return x.cos()


def _norm_chain(a):
    for _ in range(3):
        a = a * a.sum(dim=1, keepdim=True)
    return a


LAYER_NORM = torch.nn.LayerNorm(10)
GOLDEN = [  # (name, function, inputs, elements): test_perf.py's
    ("pointwise", lambda x: x.cos(), (T(10),), 20),
    ("broadcast add", lambda x, y: x + y, (T(10, 10), T(10)), 210),
    ("transpose add", lambda x: x + x.t(), (T(10, 10),), 200),
    ("reduction", lambda x: x.sum(dim=1), (T(10, 10),), 110),
    ("extern mm", lambda x: torch.mm(x, x), (T(10, 10),), 200),
    ("cos, mm, cos", _cos_mm_cos, (T(10, 10),), 600),
    ("cat of pointwise", lambda a, b: torch.cat([a.sin(), b.sin()]), (T(10), T(10)), 40),
    ("softmax", lambda a: torch.softmax(a, dim=1), (T(10, 10),), 200),
    ("double softmax", lambda a: torch.softmax(torch.softmax(a, dim=1), dim=1), (T(10, 10),), 200),
    ("norm chain", _norm_chain, (T(10, 10),), 200),
    ("index", lambda a, b: a[b], (T(10), torch.randint(0, 10, (10,), dtype=torch.int32)), 30),
]


@pytest.mark.parametrize("scheduling", SCHEDULINGS)
@pytest.mark.parametrize("name, f, inputs, elements", GOLDEN, ids=[g[0] for g in GOLDEN])
def test_inductors_kernels_move_what_test_perf_says(name, f, inputs, elements, scheduling):
    assert count_numel(f, *inputs, gpu=SCHEDULINGS[scheduling]) == elements


@pytest.mark.parametrize("scheduling", SCHEDULINGS)
def test_a_layer_norm_kernel_writes_its_output_and_statistics(scheduling):
    with torch.no_grad():
        assert count_numel(LAYER_NORM, T(10, 10), gpu=SCHEDULINGS[scheduling]) == 220


@pytest.mark.parametrize("f, inputs, elements", [
    (lambda x: x.cos().cos().cos(), (T(10, grad=True),), 50),  # full recompute: only x is saved
    (lambda a, b, c, d: (a + b + c + d).cos().cos(), tuple(T(10, grad=True) for _ in range(4)), 90),
    (lambda x: (x < 0) * x, (T(100, grad=True),), 450),  # a bool mask saved, not a float
], ids=["full recompute", "partial recompute", "saved dtype"])
@pytest.mark.parametrize("scheduling", SCHEDULINGS)
def test_training_graphs_recompute_as_inductors_partitioner_does(f, inputs, elements, scheduling):
    assert count_numel(f, *inputs, train=True, gpu=SCHEDULINGS[scheduling]) == elements


@pytest.mark.parametrize("scheduling", SCHEDULINGS)
def test_dropout_noise_is_generated_inside_the_kernel_that_uses_it(scheduling):
    # CUDA's dropout as the planner runs it (aten's fused native_dropout): inductor's RNG pass makes the
    # noise in the kernel, so the input is read and the output written once (200), and one int64 seed is
    # written by inductor's seed kernel and read by the dropout kernel (16 bytes: 4); no noise tensor
    def dropout(x):
        return torch.native_dropout(x, 0.1, True)[0]

    assert count_numel(dropout, T(10, 10), gpu=SCHEDULINGS[scheduling]) == 204


@pytest.mark.parametrize("scheduling", SCHEDULINGS)
def test_a_pointwise_kernel_writes_into_the_dying_buffer_it_reads_and_the_plan_counts_one(scheduling):
    # the sine of a matmul's output, read by nothing else, is written into that output's buffer
    # (SchedulerNode.decide_inplace_update): the plan holds one 64 x 64 buffer there, not two
    from utils.plan.codegen_check import planned_peak

    captured = []

    def compiler(graph, example_inputs):
        schedule = scheduled.scheduled_kernels(graph, example_inputs, "forward", SCHEDULINGS[scheduling])
        captured.append((compiled.as_scheduled(graph, schedule), example_inputs))
        return make_boxed_func(graph.forward)

    torch._dynamo.reset()
    f = torch.compile(lambda a, b, c: torch.mm(torch.mm(a, b).sin() * 2, c),
                      backend=aot_autograd(fw_compiler=compiler, decompositions=select_decomp_table()))
    with torch.no_grad():
        f(T(64, 8), T(8, 64), T(64, 8))
    (plan, inputs), = captured
    assert plan.inplace == {"mul": "mm"}
    big, small = 64 * 64 * 4, 64 * 8 * 4
    assert planned_peak(plan._replace(inplace={}), inputs) == 2 * big + small  # the sine beside the matmul's output
    assert planned_peak(plan, inputs) == big + 3 * small  # now the first matmul, its inputs still held
