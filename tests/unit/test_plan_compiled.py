"""torch.compile planned: the fusion model on graphs with known answers, and the compiled plan
against a real tracked compiled step on this CPU."""

import dataclasses

import pytest
import torch
from helpers import run_config
from torch.fx.experimental.proxy_tensor import make_fx

from utils.measure.data import batches
from utils.measure.memory import PeakTracker, one_iteration_per_forward
from utils.plan import compiled, planner, scheduled, timing
from utils.registry import load_setup
from utils.techniques import setup_of
from utils.techniques.run import new_run

CFG = run_config("x", steps=1, warmup=0, model="tiny", batch=4, seq=64, device="cpu", data="fixed", seed=0, lr=6e-4)


def _written(fn, *args):
    from torch._inductor.compile_fx import select_decomp_table

    graph = make_fx(fn, decomposition_table=select_decomp_table())(*args).graph  # as the plan's graphs
    kept = compiled.materialised(graph)
    return {n.name for n in graph.nodes if n.op == "call_function" and n in kept and not timing.is_view(n.target)}


def test_pointwise_chains_are_fused_and_what_a_matmul_reads_is_written():
    x, w = torch.randn(4, 8), torch.randn(8, 8)
    # mul feeds add only (fused); add feeds the matmul (written); the matmul and the output are written
    assert _written(lambda x, w: torch.relu((x * 2 + 1) @ w), x, w) == {"add", "mm", "relu"}
    # a reduction reads its pointwise producer from registers; its own output is written
    assert _written(lambda x: (x.exp() * 3).sum(-1), x) == {"sum_1"}
    # a view passes the need on: the transposed add is read by the matmul
    assert _written(lambda x, w: (x + 1).t() @ w, x, w[:4]) == {"add", "mm"}


def test_a_scatter_into_a_constant_is_pointwise():
    logits, target = torch.randn(4, 10), torch.randint(0, 10, (4, 1))
    written = _written(lambda g, t: torch.zeros_like(g).scatter(1, t, -1.0) * g, logits, target)
    assert not any(name.startswith(("scatter", "full", "zeros")) for name in written)


def test_cross_entropys_gather_reads_its_log_softmax_where_it_is_computed():
    # inductor lowers gather as a pointwise kernel loading its input (lowering.py): the fp32 log-softmax
    # of the upcast logits is never written, only the reductions it needs and the loss
    logits, target = torch.randn(4, 10, dtype=torch.bfloat16), torch.randint(0, 10, (4,))
    written = _written(lambda x, t: torch.nn.functional.cross_entropy(x.float(), t, reduction="sum"), logits, target)
    assert not any(name.startswith(("gather", "sub", "convert", "_log_softmax")) for name in written)
    assert any(name.startswith(("amax", "sum")) for name in written)


def _real_compiled_peak(setup, cfg):
    """A real compiled step on this CPU, compiled as the plan compiles (inductor's own kernels
    allocate below the dispatcher, where no tracker can see), tracked op by op."""
    torch.manual_seed(0)
    graphs, run = compiled.Graphs(), new_run(cfg)
    with compiled.plan_compile(graphs):
        setup(run)
    data = batches(cfg)
    for _ in range(planner.STEPS):
        run.step(run, [next(data) for _ in range(run.accum)])
    tracker = PeakTracker()
    tracker.track_external(run.model, run.optimizer)
    graphs.mode = tracker
    micro = [next(data) for _ in range(run.accum)]
    with compiled.quiet_global_hooks(), one_iteration_per_forward(tracker, run.train_model):
        run.step(run, micro)
    return next(iter(tracker.get_tracker_snapshot("peak").values()))["Total"] / 2**20


@pytest.mark.parametrize("technique", ["compile", "stack"])
def test_the_compiled_plan_matches_a_real_tracked_compiled_step(technique):
    setup = load_setup(technique)
    fake = planner.plan(setup, CFG, model_cuda=False)
    assert fake.record["compiled"] is True
    assert fake.peak_mib == pytest.approx(_real_compiled_peak(setup, CFG), rel=0.02)


def test_compiling_keeps_less_than_the_same_step_eager():
    # GPT-2's width and vocabulary, one block: the logits' cross-entropy is where compiling saves most
    cfg = dataclasses.replace(CFG, model="gpt2", layers=1, batch=2, seq=1024)
    eager, compiled_plan = (planner.plan(setup_of(n)[1], cfg) for n in ("flash+fused", "stack"))
    assert compiled_plan.breakdown["activations"] < eager.breakdown["activations"]  # min-cut recomputes, fusion



def test_torchaos_compiled_step_holds_its_fp32_moments_and_writes_the_rest_in_place():
    # torchao's AdamW8bit compiles one step per parameter: inductor writes the new weight and 8-bit codes
    # into their inputs and realises each moment's fp32 value, scaled by its block's absmax (read by the
    # codes' binary search through many loads): 2 x 4 bytes per element beside the state
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torchao.optim import AdamW8bit

    from utils import devices
    from utils.plan.cuda import real_torchao_qmaps

    rows, cols = 1024, 512
    with FakeTensorMode(allow_non_fake_inputs=True):
        weight = torch.nn.Parameter(torch.zeros(rows, cols, dtype=torch.bfloat16))
        optimizer = AdamW8bit([weight])
        real_torchao_qmaps()
        graphs = compiled.Graphs(devices.by_key("a100-80gb"))
        with compiled.plan_compile(graphs):
            weight.grad = torch.zeros_like(weight)
            optimizer.step()  # compiles (dynamo never traces under the tracker)
            tracker = PeakTracker(on_op=timing.OpRecorder())
            tracker.track_external(weight, optimizer)
            graphs.mode = tracker
            with tracker:
                optimizer.step()
    peak = next(iter(tracker.get_tracker_snapshot("peak").values()))["Total"]
    state = 2 * (rows * cols + rows * cols // 256 * 4 + 256 * 4)  # codes, a scale per block, the map
    fp32_moments = 2 * 4 * rows * cols  # both at once: one kernel writes them, the next reads them
    assert peak - (2 * rows * cols + state) == pytest.approx(fp32_moments, rel=0.01)  # the weight, tracked
    # its kernels are timed in the phase that runs them (inductor lowered the step as an inference graph)
    ops = tracker.on_op.ops  # the compiled step's kernels and the eager count of steps
    assert {op.phase for op in ops} == {"optimizer"} and sum(op.compiled for op in ops) >= 2


def test_a_graph_runs_in_the_order_inductors_kernels_compute_it_and_still_computes_the_same():
    # the partitioner puts what backward needs of a layer norm (its rsqrt over the width) at the forward's
    # end; inductor computes it in the layer norm's kernel, and frees what that kernel reads there
    def forward(x, w):
        norm = torch.rsqrt(x.pow(2).mean(-1, keepdim=True))
        y = (x * norm) @ w
        return y.relu(), norm / 8

    x, w = torch.randn(4, 8), torch.randn(8, 8)
    module = make_fx(forward)(x, w)
    names = [n.name for n in module.graph.nodes]
    div = next(n for n in names if n.startswith("div"))
    assert names.index(div) > names.index("relu")  # traced last
    positions = {name: 0 for name in names[names.index("pow_1"):names.index("mul") + 1]} | {div: 0}
    positions |= {"mm": 1, "relu": 2}
    ordered = scheduled.in_kernel_order(module, positions)
    order = [n.name for n in ordered.graph.nodes]
    assert order[:2] == names[:2] and order.index(div) < order.index("mm") < order.index("relu")
    assert all(torch.equal(a, b) for a, b in zip(ordered(x, w), module(x, w)))


def test_compiled_whole_the_step_in_backward_frees_no_gradient_early_and_make_plan_says_so(capsys):
    from utils import devices
    from utils.plan import __main__ as plan_command
    from utils.plan.config import Target

    # one short sequence: the step's peak is where the gradients are, not the activations
    scopes = {scope: dataclasses.replace(CFG, batch=1, seq=8, compile_scope=scope) for scope in ("model", "blocks")}
    plans = {scope: planner.plan(setup_of("step_in_backward+compile")[1], cfg, Target(devices.by_key("h100-sxm")))
             for scope, cfg in scopes.items()}
    # one backward graph returns every gradient at its end (its outputs until their hooks step them); by blocks,
    # each block's backward hands its gradients on as it ends
    whole = plans["model"].breakdown
    assert whole["grads"] + whole["temporaries"] >= 0.9 * whole["params"]
    assert plans["model"].peak_mib > plans["blocks"].peak_mib
    plan_command._memory_notes(plans, None)
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and said[0].startswith("model: compiled as one graph") and "frees none early" in said[0]
