"""Predicted step time: FLOPs and bytes of known ops, the roofline on synthetic ops, and technique
effects that come out of the trace (nothing written per technique)."""

import dataclasses

import pytest
import torch
from helpers import run_config, set_env, tiny_run
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from utils import devices, results
from utils.analysis import configs, stats
from utils.measure.memory import PeakTracker
from utils.measure.train import build_run
from utils.plan import machine, planner, timing
from utils.plan.config import Target
from utils.plan.cudagraphs import STEP
from utils.registry import load_setup

CFG = run_config("x", steps=1, warmup=0, model="tiny", batch=4, seq=64, device="cpu", data="fixed", seed=0, lr=6e-4)
H100 = devices.by_key("h100-sxm")


def _recorded(fn):
    recorder = timing.OpRecorder()
    with FakeTensorMode():
        a, b = torch.empty(64, 32), torch.empty(32, 16)
        with PeakTracker(on_op=recorder):
            fn(a, b)
    return recorder.ops


def test_flops_and_bytes_of_known_ops():
    ops = _recorded(lambda a, b: (a @ b).t().add_(1.0))
    mm, add = ops  # the transpose is a view: no kernel, nothing moved
    assert (mm.name, mm.kind, mm.flops) == ("mm", "matmul", 2 * 64 * 32 * 16)
    assert mm.bytes == 4 * (64 * 32 + 32 * 16 + 64 * 16)  # both inputs read, the output written
    assert (add.name, add.kind, add.flops) == ("add_", "memory", 0)
    assert add.bytes == 2 * 4 * 64 * 16  # in place: read and written once


def test_the_roofline_takes_the_slower_of_compute_and_memory():
    matmul = timing.Op("mm", "forward", "matmul", flops=10**12, bytes=10**9, dtype=torch.bfloat16, compiled=False)
    compute = 10**12 / (989.4e12 * timing.MATMUL_EFFICIENCY)
    assert timing.op_seconds(matmul, H100) == pytest.approx(compute)  # 1.27 ms of compute beats 0.37 ms of bytes
    stream = dataclasses.replace(matmul, kind="memory", flops=0, bytes=3 * 10**9)
    assert timing.op_seconds(stream, H100) == pytest.approx(3e9 / (3.35e12 * timing.MEMORY_EFFICIENCY))
    fp32 = dataclasses.replace(matmul, dtype=torch.float32)
    assert timing.op_seconds(fp32, H100, tf32=True) < timing.op_seconds(fp32, H100)  # tensor cores or not
    # ten thousand tiny ops: the host's launches bound the phase, unless one CUDA graph replays them
    tiny = [dataclasses.replace(stream, bytes=1000)] * 10_000
    assert timing.step_time(tiny, H100, 1).bound["forward"] == "host"
    assert timing.step_time(tiny, H100, 1, graphed=STEP).ms["forward"] < 1


def test_the_host_time_per_op_is_this_machines_and_a_cpu_adds_it_to_each_op():
    tiny = [timing.Op("add", "forward", "memory", flops=0, bytes=1000, dtype=torch.float32, compiled=False)] * 1000
    serial = [timing.step_time(tiny, H100, 1, serial=True, eager_op_us=us).ms["forward"] for us in (2.0, 7.0)]
    assert serial[1] - serial[0] == pytest.approx(1000 * 5.0 / 1e3)  # 1000 ops, 5 us more each
    run = tiny_run()
    micro = [(torch.zeros(2, 16, dtype=torch.long),) * 2]
    cpu = machine.measured_cpu("test")[0]
    measured = machine.host_op_us(lambda mark: run.step(run, micro, mark), cpu, repeats=2)
    assert set(measured) == set(timing.PHASES)  # one figure per phase, each per op of that phase
    assert all(0 <= us < 10_000 for us in measured.values())  # microseconds per op: any host, however busy
    per_phase = timing.step_time(tiny, H100, 1, serial=True, eager_op_us={"forward": 2.0}).ms["forward"]
    assert per_phase == pytest.approx(serial[0])


def test_an_optimizer_that_syncs_per_parameter_adds_its_host_time_to_the_gpus():
    step = [timing.Op("optimizer_update_8bit_blockwise", "optimizer", "memory", flops=0, bytes=10**6,
                      dtype=torch.float32, compiled=False)] * 100
    device = timing.step_time(step, H100, 1).ms["optimizer"]  # overlapped: the GPU's 100 kernels, or the host
    synced = timing.step_time(step, H100, 1, synced=timing.SyncedSteps(100, 16.0)).ms["optimizer"]
    assert synced == pytest.approx(100 * timing.op_seconds(step[0], H100) * 1e3 + 100 * 16.0 / 1e3)
    assert synced > device


def test_bitsandbytes_steps_are_planned_as_synchronised_and_slower_than_fused_adamw():
    plans = {n: planner.plan(load_setup(n), CFG, Target(H100)) for n in ("fused", "8bit")}
    synced = planner.synced_steps(build_run(CFG, load_setup("8bit")).optimizer)
    assert synced.params == len(list(build_run(CFG, load_setup("8bit")).model.parameters()))
    assert timing.EAGER_OP_US < synced.host_us < 10_000  # its Python loop, plus one launch, per parameter
    assert planner.synced_steps(build_run(CFG, load_setup("fused")).optimizer) is None
    assert plans["8bit"].time.ms["optimizer"] > plans["fused"].time.ms["optimizer"]


class _Dispatched(TorchDispatchMode):
    """The bitsandbytes ops dispatched while it lasts."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "bitsandbytes":
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_bitsandbytes_host_time_runs_its_dispatch_to_kernels_doing_nothing_and_gives_its_kernels_back():
    bnb = pytest.importorskip("bitsandbytes")
    weight = torch.nn.Parameter(torch.randn(4096))
    weight.grad = torch.randn(4096)
    optimizer, before = bnb.optim.AdamW8bit([weight]), weight.detach().clone()
    with planner._kernels_doing_nothing(planner.BITSANDBYTES_UPDATES), _Dispatched() as dispatched:
        optimizer.step()
    assert dispatched.ops == ["bitsandbytes.optimizer_update_8bit_blockwise.default"]  # through the dispatcher
    assert torch.equal(weight.detach(), before)  # to a kernel that did nothing
    optimizer.step()
    assert not torch.equal(weight.detach(), before)  # bitsandbytes' own CPU kernel again


@pytest.fixture(scope="module")
def plans():
    return {name: planner.plan(load_setup(name), dataclasses.replace(CFG, seq=256), Target(H100))
            for name in ("baseline", "bf16", "flash", "fused")}


def test_bf16_halves_the_bytes_of_the_pointwise_ops(plans):
    def gelu_bytes(plan):
        return sum(op.bytes for op in plan.ops if op.name == "gelu" and op.phase == "forward")

    assert gelu_bytes(plans["bf16"]) == gelu_bytes(plans["baseline"]) // 2


def test_flash_removes_the_t_by_t_traffic(plans):
    def t_by_t(plan):  # ops over the B x heads x T x T scores: the mask, softmax, dropout and their backward
        return [op for op in plan.ops if op.shape[-2:] == (256, 256)]

    assert len(t_by_t(plans["bf16"])) > 4 and not t_by_t(plans["flash"])
    assert any(op.kind == "attention" for op in plans["flash"].ops)
    assert plans["flash"].time.step_ms < plans["bf16"].time.step_ms


def test_fused_adamw_launches_fewer_optimizer_kernels(plans):
    def optimizer_ops(plan):
        return sum(op.phase == "optimizer" for op in plan.ops)

    assert optimizer_ops(plans["fused"]) < optimizer_ops(plans["baseline"])


def test_predicted_times_never_enter_measured_statistics(results_file, monkeypatch):
    from utils.plan import __main__ as plan_command

    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "baseline flash"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 0
    df = results.read(results_file)
    assert (df["step_ms"] > 0).all() and set(df["kind"]) == {"predicted"}
    assert df["device"].str.startswith("H100 SXM 80GB (planned on").all()
    assert stats.measured(df).empty and not configs.configurations(df)


def test_the_report_shows_predicted_times_apart_with_their_error(results_file, tmp_path, monkeypatch):
    from utils import report
    from utils.plan import __main__ as plan_command

    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "baseline"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 0
    planned = results.read(results_file).iloc[-1]
    measured_row = {**planned.to_dict(), "kind": "measured", "phase": "measured", "run_id": "gpu", "status": "ok",
                    "device": "NVIDIA H100 80GB HBM3", "step_ms": planned["step_ms"] * 2, "accum": 1}
    results.append_rows(results_file, [measured_row])
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    section = text.split("## Predicted step time")[1]
    assert "### Predicted for H100 SXM 80GB, not measured" in section and "-50.0%" in section  # half the measured
    assert "**" not in section  # never bolded
    # a plan of 4 GPUs is a row of its own, never the one-GPU plan's nor compared with a one-process run
    sharded = {**planned.to_dict(), "run_id": "fsdp", "parallel": "fsdp", "world_size": 4,
               "timestamp_utc": "2099-01-01T00:00:00+00:00"}
    results.append_rows(results_file, [sharded])
    section = report.build(results_file, tmp_path / "R.md", tmp_path / "plots").split("## Predicted step time")[1]
    assert "| 4 (fsdp) |" in section and "| 1 |" in section and section.count("-50.0%") == 1
    # a run at another accumulation is another step: never pooled into the plan's truth
    other = {**measured_row, "run_id": "accum", "accum": 8, "step_ms": planned["step_ms"] * 9}
    results.append_rows(results_file, [other])
    section = report.build(results_file, tmp_path / "R.md", tmp_path / "plots").split("## Predicted step time")[1]
    assert section.count("-50.0%") == 1
    # a card too small for the plan's device total: said in both sections, with what it would need
    small = {**planned.to_dict(), "run_id": "small", "device": "H100 SXM 80GB at 0.5 GiB (planned on a CPU)",
             "device_total_mib": 900.0, "timestamp_utc": "2099-01-02T00:00:00+00:00"}
    results.append_rows(results_file, [small])
    text = report.build(results_file, tmp_path / "R.md", tmp_path / "plots")
    section = text.split("## Predicted step time")[1]
    assert "### Predicted for H100 SXM 80GB at 0.5 GiB, not measured" in section and "| no (0.88 GiB) |" in section
    assert section.count("| yes |") == 2 and "predicted for H100 SXM 80GB at 0.5 GiB, **does not fit**" in text


def test_make_plan_prints_where_the_gpus_time_goes(results_file, monkeypatch, capsys):
    from utils.plan import __main__ as plan_command

    for name, value in {"RESULTS_FILE": str(results_file), "MODEL": "tiny", "TECHNIQUES": "bf16", "SEQ": "256"}.items():
        set_env(monkeypatch, name, value)
    assert plan_command.main([]) == 0
    line = capsys.readouterr().out.split("where the GPU's time goes")[1].splitlines()[2].split()
    plan = planner.plan(load_setup("bf16"), dataclasses.replace(CFG, seq=256), Target(H100))
    ms = timing.gpu_ms_by_kind(plan.ops, H100)
    assert line[0] == "bf16" and [float(x) for x in line[1:]] == pytest.approx(
        [ms[kind] for kind in ("matmul", "attention", "memory", "memory fp32", "host link")], abs=0.05)


def test_the_gpus_time_by_kind_adds_up_to_its_roofline_and_bf16_halves_the_fp32_part(plans):
    for name in ("baseline", "bf16"):
        plan = plans[name]
        ms = timing.gpu_ms_by_kind(plan.ops, H100)
        device = sum(timing.op_seconds(op, H100) for op in plan.ops) * 1e3
        assert ms["matmul"] + ms["attention"] + ms["memory"] + ms["host link"] == pytest.approx(device)
        assert 0 < ms["memory fp32"] <= ms["memory"]
    fp32 = [timing.gpu_ms_by_kind(plans[n].ops, H100)["memory fp32"] for n in ("baseline", "bf16")]
    assert fp32[1] < 0.8 * fp32[0]  # autocast moves the activations' pointwise ops to bf16
