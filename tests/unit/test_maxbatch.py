"""make maxbatch: the search, PLAN=1, bad input."""

import re

import pytest
from helpers import set_env

from utils import results, settings
from utils.drivers import maxbatch
from utils.plan.config import load_target


@pytest.mark.parametrize("limit", [1, 2, 3, 37, 64, 1000])
def test_the_search_finds_a_known_limit(limit):
    found, trials = maxbatch.search(lambda b: b * 1.5 + 10 <= limit * 1.5 + 10)  # memory grows with the batch
    assert found == limit
    assert len(trials) <= 2 * limit.bit_length() + 1  # x2 then bisection: logarithmic
    assert (limit, True) in trials and (limit + 1, False) in trials


def test_the_search_reports_zero_when_nothing_fits():
    assert maxbatch.search(lambda b: False) == (0, [(1, False)])


def _maxbatch(monkeypatch, results_file, **env):
    for name, value in {"RESULTS_FILE": str(results_file), "DEVICE": "cpu", "TECHNIQUE": "baseline", **env}.items():
        set_env(monkeypatch, name, value)
    return maxbatch.main()


def test_plan_one_answers_for_a_gpu_budget(results_file, monkeypatch, capsys):
    env = {"TECHNIQUE": "stack_memory", "PLAN": "1", "GPU": "a100-40gb", "GPU_MEMORY_GIB": "0.5", "MODEL": "tiny",
           "SEQ": "64"}
    assert _maxbatch(monkeypatch, results_file, **env) == 0
    row = results.read(results_file).iloc[-1]
    assert row["kind"] == "predicted" and int(row["batch"]) >= 1 and "CUDA context" in row["reason"]
    assert (row["model"], row["seq"], row["layers"]) == ("tiny", 64, 2)
    assert row["device"].startswith("A100 40GB at 0.5 GiB (planned on")
    out = capsys.readouterr().out
    # a line per trial as it ends (a large model's plans take minutes each), then the answer naming them all
    trials = re.findall(r"^maxbatch: stack_memory: B=(\d+) (fits|does not fit): device total [\d.]+ of 0.5 GiB", out,
                        re.M)
    said = ", ".join(f"{b}{'' if verdict == 'fits' else ' x'}" for b, verdict in trials)
    assert f"largest batch B={row['batch']}" in out and f"(trials: {said})" in out
    # the answer is the planner's device total: it fits the card, one more sequence does not
    given = settings.read()
    fits = maxbatch.PlannedFit("stack_memory", load_target(given), given)
    best = int(row["batch"])
    assert fits(best) and not fits(best + 1) and fits.total_gib(best) <= 0.5 < fits.total_gib(best + 1)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PLAN": "1", "GPU_MEMORY_GIB": "abc"}, "GPU_MEMORY_GIB must be a positive number, got 'abc'"),
        ({"PLAN": "1", "GPU": "h900"}, "GPU must be one of h100-pcie"),
        ({"PLAN": "1", "ALLOCATOR": "cudaMallocAsync"}, "ALLOCATOR must be one of native, expandable_segments"),
        ({"PLAN": "2"}, "PLAN must be an integer from 0 to 1"),
        ({"PLAN": "1", "GPU_MEMORY_GIB": "40", "TECHNIQUE": "offload"}, "offload: torchao's CPUOffloadOptimizer"),
        ({"TECHNIQUE": "nope"}, "unknown TECHNIQUE nope"),
        ({"MAXMEM_GIB": "0.01"}, "below what Python with torch needs"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(results_file, monkeypatch, capsys, env, message):
    assert _maxbatch(monkeypatch, results_file, **env) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maxbatch: error:") and message in lines[0]
    assert not results_file.exists()


@pytest.mark.parametrize("limit, start", [(37, 37), (37, 30), (37, 50), (5, 1), (1, 9), (0, 4)])
def test_a_search_from_a_guess_finds_the_same_answer(limit, start):
    assert maxbatch.search(lambda b: b <= limit, start=start)[0] == limit


@pytest.mark.parametrize("answer", [3, 60, 1000, 40000])
def test_a_jump_in_the_planned_memory_costs_logarithmic_plans_not_one_a_batch(answer):
    # memory affine in the batch up to the answer, then far past the GPU (a chord from there lands one past low)
    def figure(b):
        return b / 100 if b <= answer else 1e6

    trials = []

    def trial(b):
        trials.append(b)
        return figure(b) <= answer / 100 + 0.001

    high = min(maxbatch.MAX_BATCH, 4 * answer)
    assert maxbatch.narrow(2, high, trial, figure, answer / 100 + 0.001) == answer
    assert len(trials) <= 2 * high.bit_length() + 1
