"""The techniques, checked for what they claim on a CPU: each script sets up and trains; accumulation is the
big batch's gradient, the GradScaler's skips are seen, the CUDA graph step's buffers carry
each batch, DATA=fixed reuses one batch."""

import math

import pytest
import torch
from helpers import bare_run, run_config
from torch.nn import Sequential

from utils import catalog, registry
from utils import techniques as t
from utils.measure import data
from utils.measure import loop as bench
from utils.measure.config import RunConfig
from utils.measure.train import build_run
from utils.techniques import step


def _batch(seed, batch=2):
    return next(data.coin_flips(batch, 16, "cpu", seed))


def test_accumulation_gives_the_big_batchs_gradient():
    (x1, y1), (x2, y2) = _batch(1), _batch(2)
    whole = bare_run()
    t.sgd(whole)  # plain SGD: the update is the gradient, so weights compare gradients
    small = bare_run(accum=2)
    t.sgd(small)
    t.accumulate(small)
    loss_whole, _ = whole.step(whole, [(torch.cat([x1, x2]), torch.cat([y1, y2]))])
    loss_small, _ = small.step(small, [(x1, y1), (x2, y2)])
    torch.testing.assert_close(loss_small, loss_whole)
    for a, b in zip(small.model.parameters(), whole.model.parameters()):
        torch.testing.assert_close(a, b)


def test_accum_counts_every_micro_batchs_tokens(tmp_path):
    run = bare_run(accum=3)
    t.adamw(run)
    t.accumulate(run)
    _, measured = bench.measure(run, data.batches(run.cfg), steps=2, warmup=0)
    assert len(measured.step_ms) == 2 and len(measured.loss) == 2  # a row per optimizer step
    for step_ms, fwd, bwd, opt in zip(measured.step_ms, *measured.parts_ms.values()):
        assert fwd + bwd + opt == pytest.approx(step_ms)  # three forwards and backwards summed


def test_the_grad_scaler_reports_a_skipped_step():
    run = bare_run()
    t.autocast_fp16(run)
    t.adamw(run)
    before = [p.detach().clone() for p in run.model.parameters()]
    run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120)  # scaled grads overflow fp32
    _, skipped = run.step(run, [_batch(1)])
    assert skipped.item() is True
    assert all(torch.equal(a, b) for a, b in zip(before, run.model.parameters()))  # no update
    run.scaler = torch.amp.GradScaler("cpu", init_scale=1.0)
    _, skipped = run.step(run, [_batch(2)])
    assert skipped.item() is False


def test_without_a_scaler_the_step_reports_nothing_skipped():
    run = bare_run()
    t.adamw(run)
    assert not run.scaler.is_enabled()
    assert run.step(run, [_batch(1)])[1] is None


@pytest.mark.parametrize("scaled", [False, True])
def test_grad_clip_bounds_the_update_by_the_true_norm(scaled):
    # plain SGD at LR 1: the update is the gradient, so its norm is the clipped one; under fp16's GradScaler
    # (1,024 x here), clipping the scaled gradients instead would leave an update 1,024 times smaller
    run = bare_run()
    run.cfg = RunConfig(**{**run.cfg.__dict__, "grad_clip": 1e-3, "lr": 1.0})
    if scaled:
        t.autocast_fp16(run)
        run.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # no overflow: the step is taken
    t.sgd(run)
    before = [p.detach().clone() for p in run.model.parameters()]
    _, skipped = run.step(run, [_batch(1)])
    assert not (skipped is not None and skipped.item())
    moved = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p - b)
                                                  for p, b in zip(run.model.parameters(), before)]))
    assert moved.item() == pytest.approx(1e-3, rel=0.01)
    assert run.record()["grad_clip"] == 1e-3


def _cpu_graph_step():
    # capture and warm-up that run the body itself: the graph step's logic runs eagerly on a CPU
    return step.CudaGraphStep(capture=lambda body: body, warm=lambda body, n: [body() for _ in range(n)],
                              capturable=False)  # capturable: CUDA only


def test_the_cuda_graph_step_replays_each_batch_like_the_eager_step():
    # capture that returns the body itself: the static-buffer logic runs eagerly on a CPU
    eager, graphed = bare_run(), bare_run()
    for run in (eager, graphed):
        t.adamw(run)
    graphed.step = _cpu_graph_step()
    for seed in range(3):
        batch = _batch(seed)
        loss_eager, _ = eager.step(eager, [batch])
        loss_graph, skipped = graphed.step(graphed, [batch])
        torch.testing.assert_close(loss_graph, loss_eager)
        assert skipped is None
    for a, b in zip(graphed.model.parameters(), eager.model.parameters()):
        torch.testing.assert_close(a, b)


def test_a_cuda_graph_step_is_timed_whole():
    run = bare_run()
    t.adamw(run)
    run.step = _cpu_graph_step()
    _, measured = bench.measure(run, data.batches(run.cfg), steps=2, warmup=1)
    assert all(ms > 0 for ms in measured.step_ms)
    assert all(part == [None, None] for part in measured.parts_ms.values())  # blank, never invented
    assert run.record()["cuda_graphs"] is True


def test_a_graphed_optimizer_keeps_its_step_count_on_the_device():
    run = bare_run()
    t.adamw(run)
    assert {g["capturable"] for g in run.optimizer.param_groups} == {False}
    step.make_capturable(run.optimizer)
    assert {g["capturable"] for g in run.optimizer.param_groups} == {True}


def test_cuda_graphs_refuse_what_they_cannot_capture():
    run = bare_run()
    t.autocast_fp16(run)
    t.adamw(run)
    run.step = step.CudaGraphStep(capture=lambda body: body)
    with pytest.raises(ValueError, match="GradScaler"):
        run.step(run, [_batch(0)])
    with pytest.raises(t.Skip, match="CPU"):
        t.cuda_graphs(bare_run())


def test_fixed_data_reuses_one_batch():
    batches = data.batches(bare_run(data_source="fixed").cfg)
    first, second = next(batches), next(batches)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    fresh = data.batches(bare_run().cfg)
    assert not torch.equal(next(fresh)[0], next(fresh)[0])


def test_split_steps_sums_each_parts_intervals():
    marks = [
        ("start", 0),
        ("forward", 1),
        ("backward", 3),
        ("forward", 4),
        ("backward", 7),
        ("optimizer", 8),
        ("start", 10),
        ("step", 15),
    ]
    step_ms, parts = bench.split_steps(marks)
    assert step_ms == [8, 5]
    assert parts == {"forward": [2, None], "backward": [5, None], "optimizer": [1, None]}


@pytest.mark.parametrize("mode", catalog.COMPILE_MODES)
def test_compile_passes_its_mode_to_torch_compile_and_records_it(mode, monkeypatch):
    asked = []
    monkeypatch.setattr(torch, "compile", lambda model, mode=None: asked.append(mode) or ("compiled", model))
    run = bare_run()
    run.cfg = RunConfig(**{**run.cfg.__dict__, "compile_mode": mode})
    t.adamw(run)
    t.compile_model(run)
    assert asked == [None if mode == "default" else mode]  # "default" is torch.compile's own default
    assert run.train_model == ("compiled", run.model) and run.model is not run.train_model
    assert run.record()["compile_mode"] == mode and run.record()["compiled"] is True
    assert run.record()["compile_scope"] == "model"


def test_compile_by_blocks_compiles_each_block_and_leaves_the_rest_eager(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: compiled.append(module) or module)
    run = bare_run()
    run.cfg = RunConfig(**{**run.cfg.__dict__, "compile_scope": "blocks"})
    blocks = list(run.model.blocks)
    t.adamw(run)
    t.compile_model(run)
    assert compiled == blocks and run.train_model is run.model  # the model's own forward, blocks compiled
    assert run.record()["compile_scope"] == "blocks" and run.record()["compiled"] is True


def test_compile_by_blocks_in_checkpoint_compiles_each_block_inside_its_checkpoint(monkeypatch):
    compiled = []  # a stand-in for torch.compile's OptimizedModule: a module holding the one it compiled
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: compiled.append(module) or Sequential(module))
    run = bare_run()
    run.cfg = RunConfig(**{**run.cfg.__dict__, "compile_scope": "blocks_in_checkpoint"})
    inner = list(run.model.blocks)
    t.checkpoint_blocks(run)
    wrappers = list(run.model.blocks)
    t.adamw(run)
    t.compile_model(run)
    # the checkpoint wrappers stay the blocks the model calls; what each wraps is compiled
    assert list(run.model.blocks) == wrappers and compiled == inner
    assert [w._checkpoint_wrapped_module[0] for w in wrappers] == inner
    assert run.record()["compile_scope"] == "blocks_in_checkpoint"


def test_compile_by_blocks_in_checkpoint_without_a_checkpoint_records_blocks(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda module, mode=None: module)
    run = bare_run()
    run.cfg = RunConfig(**{**run.cfg.__dict__, "compile_scope": "blocks_in_checkpoint"})
    t.adamw(run)
    t.compile_model(run)
    assert run.record()["compile_scope"] == "blocks"  # what ran: no checkpoint to be inside of


def test_compile_by_blocks_skips_a_model_without_blocks():
    run = bare_run()
    run.cfg = RunConfig(**{**run.cfg.__dict__, "compile_scope": "blocks"})
    run.model.blocks = torch.nn.ModuleList()
    with pytest.raises(t.Skip, match="no blocks to compile"):
        t.compile_model(run)


def test_gated_mlp_rebuilds_the_model_before_anything_else():
    run = bare_run()
    t.gated_mlp(run, "swiglu")
    assert run.record()["mlp"] == "swiglu" and run.train_model is run.model
    t.strict_fp32(run)
    with pytest.raises(ValueError, match="order"):
        t.gated_mlp(run, "geglu")


CUDA_ONLY = {"tf32", "cudagraphs", "offload"}


@pytest.mark.parametrize("name", registry.known())
def test_every_script_sets_up_and_trains_in_this_process(name):
    """Each technique's own setup, applied in its stage order to the tiny model: it records what
    it applied and trains two steps (a compiled model or optimizer step is checked wired, not
    compiled: that takes tens of seconds and is make test-e2e's)."""
    cfg = run_config(name, steps=1, warmup=1, model="tiny", batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                     lr=None, layers=2, accum=2)
    try:
        run = build_run(cfg, registry.load_setup(name))
    except t.Skip as why:
        assert name in CUDA_ONLY and ("CUDA" in str(why) or "GPU" in str(why))
        return
    assert name not in CUDA_ONLY
    record = run.record()
    assert run.applied == sorted(run.applied, key=t.STAGES.index) and record["optimizer"]
    if record["compiled"]:
        assert isinstance(run.train_model, torch._dynamo.eval_frame.OptimizedModule)
        return
    if run.optimizer_compiles:
        assert record["optimizer"] == "torchao.optim.AdamW8bit"
        return
    warm, measured = bench.measure(run, data.batches(cfg), steps=1, warmup=1)
    assert all(math.isfinite(loss) for loss in warm.loss + measured.loss)
    # the techniques that switch attention to SDPA get its flash kernel, on a CPU too
    assert bench.attention_kernel(run) == ("sdpa:flash" if run.model.attention == "sdpa" else "manual")
