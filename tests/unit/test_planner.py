"""The planner: fake tracking agrees with real tracking on a CPU; CUDA modelling; refusals."""

import dataclasses

import pytest
import torch
from helpers import run_config, set_env
from torch.distributed._tools import mem_tracker

from utils import results
from utils import techniques as t
from utils.analysis import configs, stats
from utils.measure import memory
from utils.measure.data import batches
from utils.measure.train import build_run
from utils.models import build_model
from utils.plan import __main__ as plan_command
from utils.plan import planner
from utils.registry import load_setup

CFG = run_config("x", steps=1, warmup=0, model="tiny", batch=2, seq=32, device="cpu", data="fixed", seed=0, lr=6e-4)


@pytest.mark.parametrize("technique", ["baseline", "8bit", "checkpointing", "accum"])
def test_fake_and_real_tracking_agree_on_a_cpu(technique):
    setup = load_setup(technique)
    run = build_run(CFG, setup)
    data = batches(CFG)
    for _ in range(planner.STEPS):  # the optimizer state exists from the first step on, as in the plan
        run.step(run, [next(data) for _ in range(run.accum)])
    real = memory.tracked_step(run, data)
    fake = planner.plan(setup, CFG, model_cuda=False)
    assert fake.peak_mib == pytest.approx(real["mem_peak_mib"], rel=0.02)
    for part in results.MEMORY_PARTS:
        assert fake.breakdown[part] == pytest.approx(real[f"mem_{part}_mib"], abs=0.2), part


def test_the_breakdown_sums_to_the_peak():
    plan = planner.plan(load_setup("flash"), CFG)
    assert sum(plan.breakdown.values()) == pytest.approx(plan.peak_mib, abs=0.3)  # each part rounded to 0.1
    run = build_run(CFG, load_setup("baseline"))
    data = batches(CFG)
    run.step(run, [next(data)])
    real = memory.tracked_step(run, data)
    assert sum(real[f"mem_{p}_mib"] for p in results.MEMORY_PARTS) == pytest.approx(real["mem_peak_mib"], abs=0.3)


def test_states_are_at_their_real_size():
    cfg = dataclasses.replace(CFG, model="small", batch=16, seq=256)  # the peak in backward: states, no step scratch
    adamw, adam8, lion8 = (planner.plan(load_setup(n), cfg).breakdown["optimizer"] for n in ("baseline", "8bit",
                                                                                              "lion8bit"))
    params = planner.plan(load_setup("baseline"), cfg).breakdown["params"]
    assert adamw == pytest.approx(2 * params, rel=0.01)  # two fp32 moments
    assert adam8 < adamw / 3 and lion8 < adam8 * 0.6  # uint8 states plus absmax and small fp32 tensors


def test_cuda_autocast_policy_keeps_softmax_and_layer_norm_in_fp32():
    x = torch.randn(4, 8)
    with planner.cuda_autocast_policy(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.softmax(x @ x.T, dim=-1).dtype == torch.float32
        assert torch.nn.functional.layer_norm(x.bfloat16(), (8,)).dtype == torch.float32
        assert (x @ x.T).dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the override is gone afterwards
        assert torch.softmax(x @ x.T, dim=-1).dtype == torch.bfloat16


def test_cuda_rounding_is_512_byte_blocks():
    def consumed(nbytes):
        return mem_tracker._WeakRefInfo(nbytes, 1, torch.device("cpu"), mem_tracker._MemRefType.ACT).mem_consumed

    with planner.cuda_rounding():
        assert [consumed(n) for n in (1, 512, 513, 3000)] == [512, 512, 1024, 3072]
    assert consumed(3) == 3  # a CPU tensor as MemTracker counts it


def test_what_cannot_be_modelled_is_refused():
    with pytest.raises(planner.NotModelled, match="offload: torchao's CPUOffloadOptimizer"):
        planner.check_modelled(load_setup("offload"), dataclasses.replace(CFG, technique="offload"))


def _plan(monkeypatch, results_file, **env):
    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", **env}.items():
        set_env(monkeypatch, name, value)
    return plan_command.main([])


def test_predicted_rows_never_enter_step_time_statistics(results_file, monkeypatch, capsys):
    assert _plan(monkeypatch, results_file, TECHNIQUES="baseline fused") == 0
    out = capsys.readouterr().out
    assert "\nbaseline " in out and "\nfused " in out and "not modelled:" in out
    df = results.read(results_file)
    assert set(df["kind"]) == {"predicted"} and set(df["phase"]) == {"predicted"}
    assert stats.measured(df).empty and not configs.configurations(df)
    fake_timed = df.assign(step_ms=1.0)  # even if a predicted row carried a time, it stays out
    assert stats.measured(fake_timed).empty


def test_a_technique_that_fails_to_plan_costs_the_others_nothing(results_file, monkeypatch, capsys):
    plan = planner.plan

    def fails_for_fused(setup, cfg, *args, **kwargs):
        if cfg.technique == "fused":
            raise NotImplementedError("no rule registered for HigherOrderOperator run_and_save_rng_state")
        return plan(setup, cfg, *args, **kwargs)

    monkeypatch.setattr(planner, "plan", fails_for_fused)
    assert _plan(monkeypatch, results_file, TECHNIQUES="fused baseline") == 1
    said = capsys.readouterr()
    assert "fused" in said.err and "failed: NotImplementedError: no rule registered" in said.err
    assert "1 predicted row appended" in said.out and "failed: fused" in said.out
    assert list(results.read(results_file)["technique"]) == ["baseline"]  # kept, not lost with the failure


def test_the_planner_builds_what_training_builds(results_file, monkeypatch, capsys):
    # MODEL=lstm plans the LSTM, and LAYERS is the depth planned: the same build path as training
    assert _plan(monkeypatch, results_file, TECHNIQUES="baseline", MODEL="lstm") == 0
    assert _plan(monkeypatch, results_file, TECHNIQUES="baseline", LAYERS="1") == 0
    assert _plan(monkeypatch, results_file, TECHNIQUES="baseline", LAYERS="4") == 0
    lstm, one, four = results.read(results_file).itertuples()
    assert (lstm.model, lstm.layers, one.layers, four.layers) == ("lstm", 2, 1, 4)
    real_lstm = build_model("lstm", 128)
    assert lstm.n_params == real_lstm.num_params() and lstm.flops_per_token == real_lstm.flops_per_token(128)
    assert four.mem_params_mib > 2 * one.mem_params_mib and four.mem_peak_mib > 2 * one.mem_peak_mib


@pytest.mark.parametrize(
    "env, message",
    [
        ({"TECHNIQUES": "compile", "COMPILE_MODE": "max-autotune"}, "cannot model compile"),
        ({"TECHNIQUES": "baseline", "BATCH": "100000000000"}, "more than any GPU holds"),
        ({"TECHNIQUES": "nope"}, "unknown technique nope"),
        ({"TECHNIQUES": "baseline", "LAYERS": "0"}, "LAYERS must be a positive integer"),
        ({"TECHNIQUES": "baseline", "ALLOCATOR": "cudaMallocAsync"}, "ALLOCATOR must be one of native"),
        ({"TECHNIQUES": "baseline", "GPU": "v100"}, "GPU must be one of h100-pcie"),
        ({"TECHNIQUES": "baseline", "MODULE_LOADING": "lazzy"}, "MODULE_LOADING must be one of lazy, eager"),
        # 10 million blocks of fake tensors and their trace: more than this machine holds
        ({"TECHNIQUES": "baseline", "LAYERS": "10000000"}, "a plan of 10,000,000 blocks holds about 9,765.8 GiB"),
    ],
)
def test_plan_bad_input_says_one_line_and_writes_nothing(results_file, monkeypatch, capsys, env, message):
    assert _plan(monkeypatch, results_file, **env) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plan: error:") and message in lines[0]
    assert not results_file.exists()


def test_make_plan_prints_the_three_figures_and_what_it_assumed(results_file, monkeypatch, capsys):
    assert _plan(monkeypatch, results_file, TECHNIQUES="baseline bf16", GPU="t4") == 0
    out = capsys.readouterr().out
    assert "on T4 (16 GiB)" in out and "allocator native" in out
    # the techniques' capability checks are answered as the planned GPU's generation: Turing has no bf16
    assert "bf16" in out and "not modelled: the technique skips as planned for T4: this GPU has no native bf" in out
    # no measured context for Turing: the figure used and that it is assumed, with its source
    assert "CUDA context 381 MiB (assumed: no measured figure for this generation)" in out
    header = next(line for line in out.splitlines() if line.startswith("technique"))
    assert header.split()[1:4] == ["allocated", "reserved", "total"] and header.endswith("plan s")
    rows = results.read(results_file)
    assert (rows["peak_reserved_mib"] >= rows["peak_alloc_mib"] - 1).all()
    assert (rows["device_total_mib"] == (rows["peak_reserved_mib"] + 381).round(1)).all()
    assert rows["device"].str.startswith("T4 (planned on").all()


def test_stack_memory_uses_least_memory_of_the_planned_techniques():
    peaks = {n: planner.plan(load_setup(n), CFG).peak_mib for n in ("baseline", "flash", "checkpointing", "8bit",
                                                                  "stack_memory")}
    assert min(peaks, key=peaks.get) == "stack_memory"


def test_lion_8bit_composes_in_the_optimizer_stage():
    run = build_run(CFG, lambda r: (t.strict_fp32(r), t.lion_8bit(r, lr_scale=1 / 3, weight_decay_scale=3)))
    assert type(run.optimizer).__name__ == "Lion8bit" and run.lr == pytest.approx(CFG.lr / 3)


def test_fp16_is_planned_with_its_grad_scaler_as_on_the_gpu():
    # torch disables GradScaler("cuda") where it finds no CUDA, and beside a GPU its step reads
    # found_inf on the host, which no fake tensor can answer: the plan must run it either way
    plan = planner.plan(load_setup("fp16"), CFG)
    ops = {op.name for op in plan.ops}
    assert "_amp_foreach_non_finite_check_and_unscale_" in ops and "_amp_update_scale_" in ops
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: True)  # as on a GPU box: the scaler reads found_inf
        assert planner.plan(load_setup("fp16"), CFG).ops
