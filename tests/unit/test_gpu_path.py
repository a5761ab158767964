"""The CUDA paths a first GPU run takes, checked on a CPU: what they measure (the loop's
peaks with a fake CUDA runtime, a CUDA graph's step recorded like an eager one, the loss
check's reference), what they refuse before anything runs, and what they read from the box
(device, driver, GPUs torch cannot use). make gpu_check proves them on a GPU; the TF32,
bitsandbytes and flash-attn checks are in test_gpu_refusals.py."""

import dataclasses
import subprocess
import time

import pandas as pd
import pytest
import torch
from helpers import last_measured, rows_of, run_config, set_env, tiny_run

from utils import techniques as t
from utils.measure import config, data, env, loop, memory, preflight
from utils.measure.train import _is_oom, build_run
from utils.techniques import step
from utils.techniques.parallel import World

MIB = 2**20


class FakeGpu:
    """torch.cuda as the loop calls it, on a CPU: an allocator whose peak the test drives, and
    events read from perf_counter."""

    def __init__(self):
        self.current = self.peak = 100 * MIB

    def hold_briefly(self, nbytes):  # allocated and freed again: only the peak remembers it
        self.peak = max(self.peak, self.current + nbytes)

    def reset_peak_memory_stats(self):
        self.peak = self.current

    def max_memory_allocated(self):
        return self.peak

    def max_memory_reserved(self):
        return self.peak + 20 * MIB

    def mem_get_info(self):
        return 80_000 * MIB - self.peak, 80_000 * MIB

    def synchronize(self):
        pass

    class Event:
        def __init__(self, enable_timing=True):
            self.at = None

        def record(self):
            self.at = time.perf_counter()

        def elapsed_time(self, other):
            return (other.at - self.at) * 1e3


class CapturedOnce(step.EagerStep):
    """A graphed step as the allocator sees it: its memory taken once, at the first call."""

    graphed = True

    def __init__(self, gpu, capture_bytes):
        self.gpu, self.capture_bytes, self.calls = gpu, capture_bytes, 0

    def __call__(self, run, micro_batches, mark=lambda part: None):
        self.calls += 1
        if self.calls == 1:
            self.gpu.hold_briefly(self.capture_bytes)
        return super().__call__(run, micro_batches, mark)


class EvaluatesAt:
    """An evaluator due after training step `at`, holding `nbytes` while it evaluates."""

    def __init__(self, gpu, at, nbytes):
        self.gpu, self.at, self.nbytes, self.steps, self.records = gpu, at, nbytes, 0, []

    def due(self, loss):
        self.steps += 1
        return self.steps == self.at

    def evaluate(self, trained_ms):
        self.gpu.hold_briefly(self.nbytes)
        return 0.0


def _cuda_loop(monkeypatch, graphed):
    gpu = FakeGpu()
    monkeypatch.setattr(loop, "gpu", gpu)
    run = tiny_run()
    batches = data.batches(run.cfg)
    run.cfg = dataclasses.replace(run.cfg, device="cuda")  # the loop's CUDA path; the tensors stay here
    if graphed:
        run.step = CapturedOnce(gpu, 1000 * MIB)
    evaluator = EvaluatesAt(gpu, at=4, nbytes=5000 * MIB)  # inside the measured phase (2 warm-up steps)
    return loop.measure(run, batches, steps=4, warmup=2, evaluator=evaluator)


def test_a_graphed_step_keeps_its_capture_in_the_measured_peak_and_evaluations_stay_out(monkeypatch):
    warm, measured = _cuda_loop(monkeypatch, graphed=True)
    assert warm.peak_alloc_mib == measured.peak_alloc_mib == 1100  # the graph's pool, captured in warm-up
    assert measured.peak_reserved_mib == 1120
    _, eager = _cuda_loop(monkeypatch, graphed=False)
    assert eager.peak_alloc_mib == 100  # its own phase; the evaluation's 5000 MiB counted nowhere


def _steps(run_step, n=3):
    run = tiny_run()
    run.step = run_step
    batches = data.batches(run.cfg)
    losses = [run.step(run, [next(batches)])[0].item() for _ in range(n)]
    return losses, [p.detach().clone() for p in run.model.parameters()], run.optimizer


def test_a_cuda_graph_step_rewinds_its_warm_up_so_every_optimizer_step_is_recorded():
    graph = step.CudaGraphStep(capture=lambda body: body, warm=lambda body, n: [body() for _ in range(n)],
                               capturable=False)
    eager_losses, eager_params, eager_opt = _steps(step.EagerStep())
    graph_losses, graph_params, graph_opt = _steps(graph)
    assert graph_losses == pytest.approx(eager_losses, abs=1e-6)  # not shifted by the capture's warm-up steps
    for a, b in zip(eager_params, graph_params):
        assert torch.allclose(a, b, atol=1e-6)
    steps = {float(s["step"]) for s in graph_opt.state.values()}
    assert steps == {float(s["step"]) for s in eager_opt.state.values()} == {3.0}  # Adam's count: 3, not 6


def test_the_loss_checks_reference_takes_the_ranks_slices_and_accumulates_them():
    cfg = run_config("t", steps=2, warmup=0, model="tiny", batch=2, seq=16, device="cpu", data="coinflip", seed=0,
                     lr=None, layers=2)
    two = dataclasses.replace(cfg, reference_ranks=2)
    ranks = [data.batches(dataclasses.replace(cfg, world=World("ddp", r, r, 2))) for r in range(2)]
    reference = data.batches(two)
    for _ in range(2):  # each step: rank 0's slice, then rank 1's
        for rank in ranks:
            assert torch.equal(next(reference)[0], next(rank)[0])
    # one process at B=2 accumulating 2 ranks' micro-batches = one step at B=4 on the same sequences
    split = build_run(two, lambda r: (t.strict_fp32(r), t.adamw(r)))
    whole = build_run(dataclasses.replace(cfg, batch=4), lambda r: (t.strict_fp32(r), t.adamw(r)))
    assert split.accum == 2
    batches = data.batches(two)
    split_loss = split.step(split, [next(batches) for _ in range(split.accum)])[0]
    whole_loss = whole.step(whole, [next(data.batches(dataclasses.replace(cfg, batch=4)))])[0]
    assert split_loss.item() == pytest.approx(whole_loss.item(), abs=1e-6)
    for a, b in zip(split.model.parameters(), whole.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


class HostOffload:
    """torchao's CPUOffloadOptimizer's shape: Optimizer.__init__ never called (no `state`), a
    device optimizer `d_opt` for some parameters, the rest stepped elsewhere."""

    def __init__(self, params):
        params = list(params)
        self.d_opt = torch.optim.AdamW([p for p in params if p.dim() >= 2])
        self.host = torch.optim.SGD([p for p in params if p.dim() < 2], lr=0.1)

    def step(self):
        self.d_opt.step()
        self.host.step()

    def zero_grad(self, set_to_none=True):
        self.d_opt.zero_grad(set_to_none)
        self.host.zero_grad(set_to_none)


def test_an_offloading_optimizer_without_state_is_tracked_through_its_device_optimizer():
    run = tiny_run()
    run.optimizer = HostOffload(run.model.parameters())
    columns = memory.tracked_step(run, data.batches(run.cfg))
    assert columns["mem_optimizer_mib"] > 0 and columns["mem_peak_mib"] > 0
    assert memory.device_optimizers(run.optimizer) == [run.optimizer.d_opt]
    assert memory.device_optimizers(None) == []


def test_the_session_reads_the_last_measured_row_not_an_evaluation():
    rows = rows_of("flash", 10.0, steps=3) + [{**rows_of("flash", 10.0)[0], "phase": "eval", "step_ms": None}]
    df = pd.DataFrame(rows)
    assert df.iloc[-1]["phase"] == "eval"
    row = last_measured(df)
    assert row["phase"] == "measured" and row["step"] == 2


def test_the_driver_version_is_read_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "_run", lambda *cmd: "")  # no nvidia-smi on the box
    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n")
    assert env.driver_version(0, version) == "550.54.15"
    assert env.driver_version(0, tmp_path / "absent") == ""


def test_each_rank_names_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"GPU {index}")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(env, "driver_version", lambda index: "550.54.15")
    assert env.capture("cuda", 1)["device"] == "GPU 1"  # rank 1 before set_device made GPU 1 current
    assert env.capture("cuda")["device"] == "GPU 0"


def test_the_backend_follows_the_device_not_the_gpus_visible(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert World("ddp", device="cpu").backend == "gloo"
    assert World("ddp", device="cuda").backend == "nccl" and World().backend == ""
    for name, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        set_env(monkeypatch, name, value)
    assert config.parallel.world_from_env("fsdp", "cpu").backend == "gloo"


def test_auto_refuses_the_cpu_where_torch_cannot_use_the_gpus_the_box_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(env, "visible_gpus", lambda: ["GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)"])
    with pytest.raises(config.ConfigError, match=r"nvidia-smi lists 1 GPU\(s\) .* DEVICE=cpu"):
        config._device("auto")
    assert config._device("cpu") == "cpu"
    monkeypatch.setattr(env, "visible_gpus", lambda: [])
    assert config._device("auto") == "cpu"


def test_the_preflight_counts_what_this_process_already_holds_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (10 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 6 * 2**30)  # the model's weights, already there
    assert preflight.available_bytes("cuda") == 16 * 2**30


def test_cublas_failing_to_allocate_is_out_of_memory():
    assert _is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"))
    assert _is_oom(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not _is_oom(RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED"))


def test_the_loop_runs_without_tqdm(monkeypatch):
    monkeypatch.setattr(loop, "progress_bar", loop.NoProgress)  # a GPU box's python may lack tqdm
    run = tiny_run()
    _, measured = loop.measure(run, data.batches(run.cfg), steps=2, warmup=0)
    assert len(measured.step_ms) == 2


def test_the_sha_is_dirty_for_changed_code_not_for_the_figures_a_session_sets_aside(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    figures = tmp_path / "docs" / "results" / "cpu" / "results.csv"
    figures.parent.mkdir(parents=True)
    figures.write_text("run_id\n")
    (tmp_path / "train.py").write_text("steps = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "suite")
    monkeypatch.setattr(env, "ROOT", tmp_path)
    clean = env.git_sha()
    assert len(clean) == 12 and "+" not in clean
    figures.unlink()  # make session moves the committed figures aside before it writes its own
    assert env.git_sha() == clean
    (tmp_path / "train.py").write_text("steps = 2\n")
    assert env.git_sha() == clean + "+dirty"
