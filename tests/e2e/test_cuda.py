"""GPU paths; skipped without CUDA (on a GPU box, make session runs them, as does
`make test-e2e PYTHON=python3`)."""

import statistics

import pytest
import torch
from helpers import last_measured, measure_run, run_script, tiny_run

from utils import results
from utils.drivers.gpu_check.judge import FUSED_ATTENTION
from utils.measure import loop as bench

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_flash_runs_the_flash_kernel_and_records_gpu_memory(results_file):
    proc = run_script("flash", results_file, DEVICE="cuda", SEQ="64")
    assert proc.returncode == 0, proc.stderr
    row = last_measured(results.read(results_file))
    # SDPA picks its fused kernel: cuDNN's on an H200 under torch 2.11, flash's on others; the row says which ran
    assert row["attention"] in FUSED_ATTENTION and row["dtype"] == "bf16-autocast"
    assert row["peak_alloc_mib"] > 0 and row["peak_reserved_mib"] >= row["peak_alloc_mib"]
    assert row["cuda"]  # the driver too where nvidia-smi or /proc/driver/nvidia tells it (utils/measure/env.py)


def test_tf32_runs_on_an_ampere_or_newer_gpu(results_file):
    proc = run_script("tf32", results_file, DEVICE="cuda")
    assert proc.returncode == 0, proc.stderr
    row = results.read(results_file).iloc[-1]  # a skipped run's one row, or an evaluation of the run
    row = row if row["status"] == "skipped" else last_measured(results.read(results_file))
    expected = "ok" if torch.cuda.get_device_capability()[0] >= 8 else "skipped"
    assert row["status"] == expected and (expected == "skipped" or row["dtype"] == "tf32")


class GpuDelayed(torch.nn.Module):
    def __init__(self, model, cycles):
        super().__init__()
        self.model, self.cycles = model, cycles

    def forward(self, x, y):
        torch.cuda._sleep(self.cycles)  # a GPU-side spin: invisible to a host clock without a sync
        return self.model(x, y)


def test_cuda_events_see_a_delay_on_the_gpu():
    def spin_ms(cycles):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(cycles)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)

    cycles = 50_000_000
    delay_ms = statistics.median(spin_ms(cycles) for _ in range(5))
    run = tiny_run("cuda")
    plain = statistics.median(measure_run(run)[1].step_ms)
    run.train_model = GpuDelayed(run.model, cycles)
    delayed = statistics.median(measure_run(run)[1].step_ms)
    # the spin runs while the host still launches the step's kernels (most of a small step on a slow
    # host: on an H200 box a 25.4 ms spin grew the step by 20.8), so the step grows by the spin less
    # that overlap: the clock must see the spin (a host clock without a sync sees the plain step)
    assert delay_ms * 0.85 <= delayed <= (plain + delay_ms) * 1.15
    assert bench.attention_kernel(run) == "manual"
