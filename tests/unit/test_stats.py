"""Statistics and MFU on synthetic data with known answers."""

import numpy as np
import pytest
import torch
from helpers import rows_of

from utils import devices as mfu
from utils import results
from utils.analysis import stats
from utils.models import build_model


def _noisy(mean, n=50, runs=1, seed=0):
    rng = np.random.default_rng(seed)
    return [mean * (1 + 0.05 * rng.standard_normal(n)) for _ in range(runs)]


def test_a_2x_slower_technique_has_a_ci_holding_2_and_not_1():
    point, low, high = stats.ratio(_noisy(40.0, seed=1), _noisy(20.0, seed=2))
    assert low < 2.0 < high and low > 1.0
    assert point == pytest.approx(2.0, rel=0.05)
    assert stats.verdict(1 / high, 1 / low) == "slower"


def test_two_identical_techniques_have_a_ci_holding_1():
    point, low, high = stats.ratio(_noisy(20.0, seed=3), _noisy(20.0, seed=4))
    assert low < 1.0 < high
    assert stats.verdict(low, high) == "no detectable difference"


def test_bootstrap_resamples_runs_not_only_steps():
    # two runs that disagree: the run-level spread must widen the CI beyond the steps' own
    runs = [np.full(50, 10.0) + np.random.default_rng(5).normal(0, 0.1, 50), np.full(50, 14.0)]
    low, high = stats.interval(stats.bootstrap(runs))
    pooled_low, pooled_high = stats.interval(stats.bootstrap([np.concatenate(runs)]))
    assert (high - low) > 3 * (pooled_high - pooled_low)
    assert low == pytest.approx(10.0, abs=0.2) and high == pytest.approx(14.0, abs=0.2)
    assert len(stats.bootstrap(runs, resamples=1000)) == 1000


def test_ragged_runs_are_bootstrapped_too():
    runs = [np.full(30, 10.0), np.full(20, 10.0)]
    assert stats.bootstrap(runs, np.median) == pytest.approx(np.full(stats.RESAMPLES, 10.0))


def test_summary_speedups_and_memory(results_file):
    # a CPU run: the tracked tensor peak is compared, the process's RSS only shown
    rows = (
        rows_of("baseline", 20.0, peak_rss_mib=500.0, mem_peak_mib=50.0)
        + rows_of("fast", 10.0, peak_rss_mib=300.0, mem_peak_mib=40.0)
        + rows_of("same", 20.0, peak_rss_mib=500.0, mem_peak_mib=50.0)
        + rows_of("compiled", 20.0, peak_rss_mib=200.0)  # no tracked step (torch.compile)
    )
    results.append_rows(results_file, rows)
    summary = stats.summary(results.read(results_file))
    assert list(summary.index) == ["baseline", "fast", "same", "compiled"]  # baseline, then fastest first
    assert summary.loc["fast", "speedup"] == pytest.approx(2.0)
    assert summary.loc["fast", "verdict"] == "faster"
    assert summary.loc["fast", "memory_saved_mib"] == pytest.approx(10.0)
    assert summary.loc["fast", "memory_kind"] == "mem_peak_mib" and summary.loc["fast", "peak_rss_mib"] == 300.0
    assert summary["memory_mib"].isna().tolist() == [False, False, False, True]  # RSS is never the figure compared
    assert summary.loc["same", "median_ms"] == 20.0 and summary.loc["same", "steps"] == 20


@pytest.mark.parametrize(
    "device, dtype, peak",
    [
        ("NVIDIA H100 80GB HBM3", "bf16-autocast", 989.4),
        ("NVIDIA H100 80GB HBM3", "fp32", 66.9),  # an fp32 run is not judged against bf16
        ("NVIDIA H100 PCIe", "tf32", 378.0),
        ("NVIDIA A100-SXM4-40GB", "bf16-autocast", 312.0),
        ("NVIDIA A10G", "bf16-autocast", 125.0),
        ("Tesla T4", "bf16-autocast", None),  # no bf16 tensor cores: no peak, no MFU
        ("NVIDIA L40S", "bf16-autocast", None),  # not in the table: blank, never a guess
        ("AMD EPYC (2 threads)", "fp32", None),
    ],
)
def test_peak_table(device, dtype, peak):
    assert mfu.peak_tflops(device, dtype) == peak


def test_override_and_mfu_stays_below_one_for_a_plausible_run():
    assert mfu.peak_tflops("anything", "fp32", override=100.0) == 100.0
    # a device the table has, at a precision it has: its datasheet peak, never the override
    assert mfu.peak_tflops("NVIDIA H100 80GB HBM3", "bf16-autocast", override=100.0) == 989.4
    assert mfu.peak_tflops("Tesla T4", "bf16-autocast", override=100.0) == 100.0  # no bf16 peak in its entry
    # the reference bare loop: bf16 + flash + fused + compile, 471k tokens/s on an H100
    with torch.device("meta"):  # the model states its own cost; shapes only
        flops_per_token = build_model("gpt2", 1024).flops_per_token(1024)
    achieved = flops_per_token * 471e3 / 1e12
    assert 0 < achieved / mfu.peak_tflops("NVIDIA H100 80GB HBM3", "bf16-autocast") < 1


def test_a_noise_floor_is_as_far_from_1_either_way_and_a_slow_technique_stays_slower_past_it():
    assert stats.noise_floor(0.8, 0.75, 0.85)[0] == pytest.approx(0.25)
    assert stats.noise_floor(1.25, 1.2, 1.3)[0] == pytest.approx(0.25)
    # an A/A run 2.8x off (a very noisy machine): 16x slower is still slower, 2x slower is within the floor
    floor = stats.noise_floor(2.8, 2.0, 3.5)[0]
    assert stats.verdict(0.02, 0.12, floor) == "slower" and stats.verdict(0.4, 0.6, floor) == "within the noise floor"
