"""make maxbatch: the search, a real memory cap on a CPU, PLAN=1, bad input."""

import pytest
from conftest import run_make

from utils import maxbatch, results


@pytest.mark.parametrize("limit", [1, 2, 3, 37, 64, 1000])
def test_the_search_finds_a_known_limit(limit):
    found, trials = maxbatch.search(lambda b: b * 1.5 + 10 <= limit * 1.5 + 10)  # memory grows with the batch
    assert found == limit
    assert len(trials) <= 2 * limit.bit_length() + 1  # x2 then bisection: logarithmic
    assert (limit, True) in trials and (limit + 1, False) in trials


def test_the_search_reports_zero_when_nothing_fits():
    assert maxbatch.search(lambda b: False) == (0, [(1, False)])


def test_maxmem_caps_each_trial_for_real(results_file):
    # tiny at T=2048: the T x T scores take ~0.4 GB per sequence, so a 0.8 GiB cap stops B at 1 or 2
    proc = run_make("maxbatch", "TECHNIQUE=baseline", "MAXMEM_GB=0.8", results_file=results_file, SEQ="2048",
                    STEPS="1")
    assert proc.returncode == 0, proc.stderr
    row = results.read(results_file).iloc[-1]
    assert row["phase"] == "maxbatch" and row["kind"] == "measured" and row["technique"] == "baseline"
    best = int(row["batch"])
    assert 1 <= best < 8 and f" {best + 1} x" in proc.stdout  # the next batch up hit the cap


def test_plan_one_answers_for_a_gpu_budget(results_file):
    proc = run_make("maxbatch", "TECHNIQUE=stack_memory", "PLAN=1", "GPU_MEMORY_GB=1.02", results_file=results_file,
                    MODEL="tiny", SEQ="64")
    assert proc.returncode == 0, proc.stderr
    row = results.read(results_file).iloc[-1]
    assert row["kind"] == "predicted" and int(row["batch"]) >= 1 and "CUDA context" in row["reason"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["PLAN=1", "GPU_MEMORY_GB=abc"], "GPU_MEMORY_GB must be a positive number, got 'abc'"),
        (["PLAN=1"], "PLAN=1 needs GPU_MEMORY_GB="),
        (["PLAN=1", "GPU_MEMORY_GB=40", "TECHNIQUE=compile"], "torch.compile"),
        (["MAXMEM_GB=0.01"], "below what Python with torch needs"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(results_file, args, message):
    proc = run_make("maxbatch", *args, *([] if any("TECHNIQUE=" in a for a in args) else ["TECHNIQUE=baseline"]),
                    results_file=results_file)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    ours = [line for line in proc.stderr.strip().splitlines() if not line.startswith("make: ***")]
    assert len(ours) == 1 and "Traceback" not in proc.stderr
    assert not results_file.exists()
