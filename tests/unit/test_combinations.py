"""Combinations: the baseline plus each part's own lines, named one way, refused when they
conflict, and equal to the scripts that spell them."""

import ast
import dataclasses
import math
import re
import shutil

import pytest
from helpers import run_config

from utils import catalog, checks, reference, registry, settings
from utils import techniques as t
from utils.measure import config, data
from utils.measure import loop as bench
from utils.measure.train import build_run
from utils.plan import planner
from utils.techniques import setup_of

PLAN_CFG = run_config("t", steps=1, warmup=0, model="tiny", batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                      lr=None, layers=2)


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


def test_within_a_stage_the_calls_keep_the_tables_order_whatever_order_the_parts_are_named_in():
    # the optimizer is built before its step is moved into backward, however the user spells it
    for written in ("step_in_backward+paged_8bit", "paged_8bit+step_in_backward"):
        functions = [c.function for c in registry.combination(written).calls]
        assert functions.index("paged_adamw_8bit") < functions.index("step_in_backward"), written
    named = [c.function for c in registry.combination("offload_activations+chunked_ce+checkpointing").calls]
    assert named[1:] == ["checkpoint_blocks", "chunked_cross_entropy", "offload_activations", "adamw"]


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


def test_t_is_the_one_technique_wherever_one_or_a_blank_list_is_taken():
    def given(**env):
        return settings.read({settings.variable(name): value for name, value in env.items()})

    assert registry.chosen(given(T="bf16+flash")) == ["flash"]  # make plan T=...: that one, canonical
    assert registry.chosen(given(TECHNIQUES="fused lion")) == ["fused", "lion"]
    assert registry.chosen(given()) == registry.known()
    assert registry.one_chosen(given(T="fused")) == "fused" and registry.one_chosen(given()) == "baseline"
    for env, said in [({"T": "flash", "TECHNIQUES": "fused"}, "T and TECHNIQUES are both given"),
                      ({"T": "flash", "TECHNIQUE": "fused"}, "T=flash and TECHNIQUE=fused name two techniques")]:
        with pytest.raises(checks.BadInput, match=said):
            (registry.chosen if "TECHNIQUES" in env else registry.one_chosen)(given(**env))


@pytest.mark.parametrize("technique, allowed", [("flash+step_in_backward", ""), ("cudagraphs", ""), ("8bit", "ddp"),
                                                ("lion8bit", "ddp")])
def test_a_part_that_cannot_run_under_fsdp_is_refused_before_anything_runs(technique, allowed):
    config.check_technique(technique, "default", 1, parallel=allowed)  # one process, or DDP's plain tensors
    with pytest.raises(checks.BadInput, match=re.escape(f"{technique} cannot run under fsdp: ")):
        config.check_technique(technique, "default", 1, parallel="fsdp")


@pytest.mark.parametrize("script", ["stack", "stack_memory"])
def test_a_named_combination_script_applies_what_its_combination_applies(script):
    spelled = "+".join(catalog.BY_NAME[script].equals)
    assert registry.combination(spelled).calls == registry.calls_of(script)
    assert registry.combination(spelled).name == script


def test_every_technique_function_has_a_stage_in_the_one_table():
    public = {name for name in t.__all__ if hasattr(getattr(t, name), "stage")}
    assert public == set(catalog.FUNCTIONS)
    assert all(getattr(t, name).stage == catalog.FUNCTIONS[name][0] for name in public)


def _value(node):
    # a literal or constant arithmetic (1 / 3): evaluated with nothing in scope
    return eval(compile(ast.Expression(node), "<setup>", "eval"), {"__builtins__": {}})


def script_calls(path):
    """A script's setup body as Calls: each line must be a t.<technique>(run, ...) call."""
    tree = ast.parse(path.read_text())
    setup = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "setup")
    calls = []
    for statement in setup.body:
        call = statement.value
        assert isinstance(statement, ast.Expr) and call.func.attr in catalog.FUNCTIONS and call.args[0].id == "run"
        calls.append(catalog.Call(call.func.attr, tuple(_value(a) for a in call.args[1:]),
                                  tuple((k.arg, _value(k.value)) for k in call.keywords)))
    return tuple(calls)


def test_the_table_is_the_scripts_folder_and_each_script_its_row():
    assert sorted(p.stem for p in registry.SCRIPTS.glob("*.py")) == sorted(registry.known())
    for name in registry.known():
        assert script_calls(registry.script(name)) == catalog.BY_NAME[name].calls, name
    assert registry.own_calls(catalog.AA_CHECK) == () and registry.own_calls(catalog.BASELINE) == ()
    assert catalog.BY_NAME[catalog.AA_CHECK].calls == catalog.BY_NAME[catalog.BASELINE].calls  # the A/A test


def test_a_new_technique_is_a_row_and_a_script(tmp_path, monkeypatch):
    scripts = tmp_path / "scripts"
    shutil.copytree(registry.SCRIPTS, scripts)
    baseline = (scripts / "baseline.py").read_text()
    (scripts / "halfckpt.py").write_text(baseline.replace('"""baseline:', '"""halfckpt: bf16 and checkpointing;', 1)
                                         .replace("    t.adamw(run)", "    t.autocast_bf16(run)\n"
                                                  "    t.checkpoint_blocks(run)\n    t.adamw(run)"))
    row = catalog.Technique("halfckpt", (catalog.FP32, catalog.call("autocast_bf16"), catalog.call("checkpoint_blocks"),
                                         catalog.ADAMW), "as bf16")
    monkeypatch.setattr(registry, "SCRIPTS", scripts)
    monkeypatch.setattr(registry, "TECHNIQUES", (*catalog.TECHNIQUES, row))
    monkeypatch.setitem(registry.BY_NAME, "halfckpt", row)
    assert script_calls(scripts / "halfckpt.py") == row.calls
    assert registry.combination("lion+halfckpt").name == "halfckpt+lion"  # combinations
    assert "halfckpt       bf16 and checkpointing;" in reference.help_text()  # help
    cfg = dataclasses.replace(PLAN_CFG, technique="halfckpt")
    plan = planner.plan(setup_of("halfckpt")[1], cfg, model_cuda=False)  # the planner
    assert plan.peak_bytes > 0 and plan.record["dtype"] == "bf16-autocast" and plan.record["checkpointing"]


def test_a_combination_trains_and_records_what_ran():
    name, setup = setup_of("lion+bf16+checkpointing")
    cfg = run_config(name, steps=2, warmup=1, model="tiny", batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                     lr=None, layers=2)
    run = build_run(cfg, setup)
    record = run.record()
    assert (record["dtype"], record["checkpointing"], record["optimizer"]) == (
        "bf16-autocast", True, "bitsandbytes.optim.Lion")
    assert record["lr"] == pytest.approx(t.ADAMW_LR / 3)
    warm, measured = bench.measure(run, data.batches(cfg), steps=2, warmup=1)
    assert all(math.isfinite(loss) for loss in warm.loss + measured.loss)
