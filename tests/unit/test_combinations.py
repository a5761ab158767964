"""Combinations: the baseline plus each part's own lines, named one way, refused when they
conflict, and equal to the scripts that spell them."""

import math

import pytest

from utils import checks, registry
from utils import techniques as t
from utils.measure import data
from utils.measure import loop as bench
from utils.measure.config import RunConfig
from utils.measure.train import build_run
from utils.techniques import setup_of


@pytest.mark.parametrize(
    "written, canonical",
    [
        ("bf16+checkpointing+lion", "bf16+checkpointing+lion"),
        ("lion+checkpointing+bf16", "bf16+checkpointing+lion"),  # the stages' order, whatever the writing
        ("checkpointing+lion+bf16", "bf16+checkpointing+lion"),
        ("bf16+flash", "flash"),  # flash's script brings bf16 autocast: one configuration, one name
        ("compile+fused+flash", "stack"),  # a script that says it equals the combination is its name
        ("lion8bit+checkpointing+flash", "stack_memory"),
        ("fp16+flash+fused", "fp16+flash+fused"),  # fp16 chosen overrules flash's bf16 prerequisite
        ("accum+fused", "fused+accum"),
        ("stack_memory+accum", "stack_memory+accum"),
        ("accum+checkpointing+flash+lion8bit", "stack_memory+accum"),  # its parts fold back into its name
    ],
)
def test_a_combination_has_one_canonical_name(written, canonical):
    assert registry.combination(written).name == canonical
    assert registry.check([written]) == [canonical]


def test_the_calls_are_the_baselines_plus_each_parts_own_in_stage_order():
    combination = registry.combination("lion+bf16+checkpointing")
    assert [str(c) for c in combination.calls] == [
        "strict_fp32(run)", "autocast_bf16(run)", "checkpoint_blocks(run)",
        "lion(run, lr_scale=0.3333333333333333, weight_decay_scale=3)",  # lion replaces the baseline's AdamW
    ]
    fp16 = registry.combination("fp16+flash+fused")
    assert [c.function for c in fp16.calls] == ["strict_fp32", "autocast_fp16", "flash_attention", "fused_adamw"]


@pytest.mark.parametrize(
    "written, said",
    [
        ("lion+8bit", "8bit and lion each choose the optimizer (adamw_8bit, lion)"),
        ("sgd+momentum", "each choose the optimizer"),
        ("bf16+fp16", "each choose the precision (autocast_fp16, autocast_bf16)"),
        ("swiglu+geglu", "each choose the MLP"),
        ("stack+fused", "stack already includes fused"),
        ("stack+flash", "stack already includes flash"),
        ("flash+flash", "flash is named twice"),
        ("flash++lion", "has an empty part"),
        ("+flash", "has an empty part"),
        ("flash+nope", "unknown technique in 'flash+nope': nope"),
        ("adamw+flash", "adamw adds nothing to the baseline"),
        ("baseline+flash", "baseline adds nothing to the baseline"),
        ("compile+cudagraphs", "cuda_graphs captures the eager step"),
    ],
)
def test_conflicts_are_refused_in_one_line_before_anything_runs(written, said):
    with pytest.raises(checks.BadInput) as refused:
        registry.combination(written)
    assert said in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("script", ["stack", "stack_memory"])
def test_a_named_combination_script_applies_what_its_combination_applies(script):
    spelled = registry.EQUALS.search(registry.script(script).read_text()).group(1)
    assert registry.combination(spelled).calls == registry.calls_of(script)
    assert registry.combination(spelled).name == script


def test_every_technique_function_has_a_stage_in_the_one_table():
    public = {name for name in t.__all__ if hasattr(getattr(t, name), "stage")}
    assert public == set(registry.FUNCTIONS)
    assert all(getattr(t, name).stage == registry.FUNCTIONS[name][0] for name in public)


def test_every_script_reads_as_a_list_of_technique_calls():
    for name in registry.known():
        assert registry.calls_of(name), name  # each composes; its own lines are what it adds
    assert registry.own_calls("adamw") == () and registry.own_calls("baseline") == ()


def test_a_combination_trains_and_records_what_ran():
    name, setup = setup_of("lion+bf16+checkpointing")
    cfg = RunConfig(name, 2, 1, "tiny", 2, 16, "cpu", "coinflip", 0, None, "unused.csv", layers=2)
    run = build_run(cfg, setup)
    record = run.record()
    assert (record["dtype"], record["checkpointing"], record["optimizer"]) == (
        "bf16-autocast", True, "bitsandbytes.optim.Lion")
    assert record["lr"] == pytest.approx(t.ADAMW_LR / 3)
    warm, measured = bench.measure(run, data.batches(cfg), steps=2, warmup=1)
    assert all(math.isfinite(loss) for loss in warm.loss + measured.loss)
