"""GPU paths; skipped without CUDA (on a GPU box, make session runs them, as does
`make test-e2e PYTHON=python3`)."""

import statistics

import pytest
import torch
from helpers import last_measured, measure_run, run_script, tiny_run

from utils import results
from utils.measure import loop as bench

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_flash_runs_the_flash_kernel_and_records_gpu_memory(results_file):
    proc = run_script("flash", results_file, DEVICE="cuda", SEQ="64")
    assert proc.returncode == 0, proc.stderr
    row = last_measured(results.read(results_file))
    assert row["attention"] in ("sdpa:flash", "flash_attn") and row["dtype"] == "bf16-autocast"
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
    assert delayed - plain == pytest.approx(delay_ms, rel=0.15)
    assert bench.attention_kernel(run) == "manual"
