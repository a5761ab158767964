"""CUDA graphs planned: the whole-step capture and compile's reduce-overhead, their allocations in
the graph's private pool, their replayed kernels free of host time; max-autotune refused."""

import dataclasses

import pytest
from helpers import run_config

from utils import devices
from utils.plan import allocator, planner, timing
from utils.plan.config import Target
from utils.plan.cudagraphs import COMPILED, GRAPH_POOL, STEP
from utils.techniques import setup_of

CFG = run_config("x", steps=1, warmup=0, model="tiny", batch=4, seq=64, device="cpu", data="fixed", seed=0, lr=6e-4)
H100 = Target(devices.by_key("h100-sxm"))


def _pooled(plan):
    return [event for event in plan.events if event[2:] == (GRAPH_POOL,)]


def test_a_captured_step_allocates_in_its_pool_as_the_eager_step_and_launches_nothing():
    eager = planner.plan(setup_of("flash+fused")[1], CFG, H100)
    graphed = planner.plan(setup_of("flash+fused+cudagraphs")[1], CFG, H100)
    assert graphed.graphed == STEP and graphed.record["cuda_graphs"] and not _pooled(eager)
    # the capture and each replay allocate in the pool; the warm-up and the state in the default pools
    assert _pooled(graphed) and len(_pooled(graphed)) < sum(1 for e in graphed.events if e[1] > 0)
    assert graphed.peak_mib == pytest.approx(eager.peak_mib, rel=0.02)
    # the warm-up's cache is released before capture (empty_cache), so the pool reuses its memory
    assert (allocator.RELEASE, 0) in graphed.events
    assert graphed.memory.reserved_mib <= eager.memory.reserved_mib * 1.5
    # the same kernels, none of them issued by the host: no phase is host-bound
    assert graphed.time.kernels == pytest.approx(eager.time.kernels, abs=5)
    assert set(graphed.time.bound.values()) == {"GPU"} and "host" in eager.time.bound.values()
    assert graphed.time.step_ms < eager.time.step_ms


def test_reduce_overhead_puts_the_compiled_graphs_in_the_pool_and_the_eager_optimizer_outside():
    cfg = dataclasses.replace(CFG, compile_mode="reduce-overhead")
    plan = planner.plan(setup_of("compile")[1], cfg, H100)
    assert plan.graphed == COMPILED and _pooled(plan)
    # the compiled graphs' kernels cost the host nothing; the eager ops around them (the optimizer, the
    # loss's division by the micro-batches) still cost it their launches
    host = {phase: sum(timing._host_us(op, plan.graphed, timing.EAGER_OP_US) for op in plan.ops if op.phase == phase)
            for phase in timing.PHASES}
    assert all(timing._host_us(op, plan.graphed, timing.EAGER_OP_US) == 0 for op in plan.ops if op.compiled)
    assert host["optimizer"] > host["forward"] + host["backward"] > 0
    launched = timing.step_time(plan.ops, H100.gpu, plan.time.tokens, graphed=None)  # the same kernels, not graphed
    assert plan.time.step_ms <= launched.step_ms


def test_max_autotune_is_refused_with_its_reason():
    with pytest.raises(planner.NotModelled, match="max-autotune: its kernels are the winners of timing"):
        planner.check_modelled(setup_of("compile")[1], dataclasses.replace(CFG, compile_mode="max-autotune"))
