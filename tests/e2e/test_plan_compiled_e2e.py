"""Compiled plans of whole models (tens of seconds of compiling each): checkpointing inside a
compiled graph, a Hugging Face Llama scheduled as on the GPU, a model from a file; compiled block by
block, planned and run."""

import pandas as pd
import pytest
from helpers import EXAMPLE, run_config, run_make

from utils import devices, models, settings
from utils.plan import planner
from utils.plan.config import Target, load_config
from utils.registry import load_setup
from utils.techniques import setup_of


def cfg_of(model, seq):
    checked = models.check(model, seq)
    return run_config("test", steps=8, warmup=0, model=model, batch=2, seq=seq, device="cpu", data="coinflip",
                      seed=0, lr=None, layers=checked.layers, vocab_size=checked.vocab_size, eval_every=0)


def test_checkpointing_inside_a_compiled_graph_is_planned_and_keeps_less():
    # the recompute replays the flash kernel from a saved RNG state (its dropout's): two higher-order ops the
    # plan runs
    target = Target(devices.by_key("h100-sxm"))
    plans = {n: planner.plan(setup_of(n)[1], load_config(n, settings.read(env={}), model="tiny", batch=4, seq=128),
                             target) for n in ("flash+compile", "flash+checkpointing+compile")}
    cut = plans["flash+checkpointing+compile"]
    assert cut.record["checkpointing"] and cut.record["compiled"] and cut.attention == "sdpa:flash"
    assert cut.breakdown["activations"] < plans["flash+compile"].breakdown["activations"]
    recomputed = [len([op for op in p.ops if op.phase == "backward"]) for p in plans.values()]
    assert recomputed[1] > recomputed[0]  # backward runs the blocks' forward again


def test_a_hugging_face_llama_is_scheduled_as_on_the_gpu():
    # its RoPE and grouped KV heads lower through inductor's reinplacing pass, on fake CUDA tensors
    cfg = load_config("stack", settings.read(env={}), batch=2, seq=64, model="hf:llama-tiny")
    plan = planner.plan(setup_of("stack")[1], cfg, Target(devices.by_key("h100-sxm")))
    assert plan.record["compiled"] and plan.time.step_ms > 0
    assert all(op.compiled for op in plan.ops if op.phase == "forward" and op.kind == "matmul")


def test_a_model_from_a_file_is_planned_compiled():
    # torch.compile's guards import the model's module by name: the file's module is registered as an import
    plan = planner.plan(load_setup("compile"), cfg_of(EXAMPLE, seq=32))
    assert plan.record["compiled"] and plan.peak_mib > 0


def test_compiled_block_by_block_the_step_in_backward_frees_each_blocks_gradients_as_it_ends():
    # compiled whole, backward is one graph that returns every gradient at its end: the step in backward
    # frees none early; block by block, each block's gradients are stepped and freed as the block ends
    target, technique = Target(devices.by_key("h100-sxm")), "pure_bf16+step_in_backward+compile"
    plans = {scope: planner.plan(setup_of(technique)[1], load_config(
        technique, settings.read(env={}), model="tiny", batch=1, seq=8, compile_scope=scope), target)
        for scope in ("model", "blocks")}
    by_blocks = plans["blocks"]
    assert by_blocks.record["compile_scope"] == "blocks" and plans["model"].record["compile_scope"] == "model"
    gradients = by_blocks.n_params * 2  # bf16
    assert plans["model"].peak_bytes - by_blocks.peak_bytes > gradients / 4
    # the blocks' matmuls run in inductor's graphs, the head's eager
    forward = [op for op in by_blocks.ops if op.phase == "forward" and op.kind == "matmul"]
    assert any(op.compiled for op in forward) and not all(op.compiled for op in forward)


def test_each_block_compiled_inside_its_checkpoint_reruns_its_whole_compiled_forward_in_backward():
    # the checkpoint outside the graph reruns the compiled forward as it ran (2x its matmuls for backward's own
    # plus 1x again); inside the graph, the partitioner recomputes only what backward reads (not a block's
    # last projection)
    target, technique = Target(devices.by_key("h100-sxm")), "checkpointing+compile"
    flops = {}
    for scope in ("blocks", "blocks_in_checkpoint"):
        plan = planner.plan(setup_of(technique)[1], load_config(
            technique, settings.read(env={}), model="tiny", batch=1, seq=8, compile_scope=scope), target)
        assert plan.record["compile_scope"] == scope
        flops[scope] = {phase: sum(op.flops for op in plan.ops if op.compiled and op.phase == phase)
                        for phase in ("forward", "backward")}
    inside = flops["blocks_in_checkpoint"]
    assert inside["backward"] == 3 * inside["forward"] > 0
    assert flops["blocks"]["forward"] == inside["forward"] and flops["blocks"]["backward"] < inside["backward"]


@pytest.mark.parametrize("technique, scope", [("compile", "blocks"), ("checkpointing+compile", "blocks_in_checkpoint")])
def test_a_run_compiled_block_by_block_trains_and_records_it(technique, scope, tmp_path):
    results_file = tmp_path / "r.csv"
    proc = run_make("run", f"T={technique}", results_file=results_file, COMPILE_SCOPE=scope, STEPS="3", WARMUP="1",
                    EVAL_EVERY="0")
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(results_file)
    measured = rows[rows["phase"] == "measured"]
    assert len(measured) == 3 and measured["loss"].notna().all()
    assert (rows["compile_scope"] == scope).all() and rows["compiled"].all()
