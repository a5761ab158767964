"""make all with CI_HALF_WIDTH: the stopping rule on synthetic data, and the rounds it runs."""

import numpy as np
import pytest
from helpers import rows_of, set_env

from utils import checks, results, settings
from utils.analysis import stats, stopping
from utils.drivers import all as run_all
from utils.drivers import runner

RULE = {
    "precision": 0.02,
    "min_runs": stats.MIN_RUNS,
    "rounds": stats.MIN_RUNS,
    "max_rounds": 10,
    "elapsed_s": 60.0,
    "round_s": 10.0,
    "budget_s": 1800.0,
}


def _runs(technique, mean, runs, spread, seed):
    """Rows of `runs` runs whose means differ by `spread` (relative) from run to run."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(runs):
        run_mean = mean * (1 + spread * rng.standard_normal())
        rows += rows_of(
            technique,
            [float(v) for v in run_mean * (1 + 0.01 * rng.standard_normal(30))],
            run_id=f"{technique}-{r}",
            repeat=r,
        )
    return rows


def _progress(results_file, rows):
    results.append_rows(results_file, rows)
    return stopping.judged_widths(stats.summary(results.read(results_file)))


def test_it_stops_when_every_ci_is_narrow_and_a_skipped_technique_does_not_block(results_file):
    rows = (
        _runs("baseline", 20.0, 3, 0.001, 1)
        + _runs("fast", 10.0, 3, 0.001, 2)
        + rows_of("tf32", 0, status="skipped", reason="CUDA only")
    )
    progress = _progress(results_file, rows)
    assert list(progress.index) == ["baseline", "fast"] and (progress["width"] < RULE["precision"]).all()
    stop, why, resolved, unresolved = stopping.adaptive_stop(progress, **RULE)
    assert (
        stop and "every technique's CI is within ±2.0%" in why and resolved == ["baseline", "fast"] and unresolved == []
    )


def test_noisy_runs_go_on_until_max_repeats_or_the_time_budget(results_file):
    progress = _progress(results_file, _runs("baseline", 20.0, 3, 0.2, 3) + _runs("fast", 10.0, 3, 0.2, 4))
    assert (progress["width"] > RULE["precision"]).all()
    assert stopping.adaptive_stop(progress, **RULE) == (False, "", [], ["baseline", "fast"])
    stop, why, _, unresolved = stopping.adaptive_stop(progress, **{**RULE, "rounds": 10})
    assert stop and why == "MAX_REPEATS=10 runs per technique reached" and unresolved == ["baseline", "fast"]
    stop, why, _, _ = stopping.adaptive_stop(
        progress, **{**RULE, "elapsed_s": 1795.0}
    )  # the next 10 s round would overrun
    assert stop and why.startswith("TIME_BUDGET_MIN=30: another round")


def test_a_narrow_ci_from_too_few_runs_is_not_resolved(results_file):
    progress = _progress(results_file, _runs("baseline", 20.0, 2, 0.001, 5) + _runs("fast", 10.0, 2, 0.001, 6))
    assert (progress["width"] < RULE["precision"]).all()
    stop, _, resolved, _ = stopping.adaptive_stop(progress, **{**RULE, "rounds": 2})
    assert not stop and resolved == []


def test_without_a_baseline_each_technique_is_judged_by_its_own_mean(results_file):
    progress = _progress(results_file, _runs("fast", 10.0, 3, 0.001, 7))
    summary = stats.summary(results.read(results_file))
    own = (summary.loc["fast", "mean_hi"] - summary.loc["fast", "mean_lo"]) / 2 / summary.loc["fast", "mean_ms"]
    assert progress.loc["fast", "width"] == pytest.approx(own) and stopping.adaptive_stop(progress, **RULE)[0]


def test_only_the_runs_of_this_invocation_count(results_file):
    # ten narrow runs from an earlier session are in the file; this session has one run each
    rows = _runs("baseline", 20.0, 10, 0.001, 8) + _runs("fast", 10.0, 10, 0.001, 9)
    this_session = [
        {**row, "run_id": f"new-{row['technique']}"}
        for row in _runs("baseline", 20.0, 1, 0.1, 10) + _runs("fast", 10.0, 1, 0.1, 11)
    ]
    results.append_rows(results_file, rows + this_session)
    stop, _, _, unresolved, progress = run_all.judge(results_file, ["new-baseline", "new-fast"], **RULE)
    assert not stop and unresolved == ["baseline", "fast"] and progress["runs"].tolist() == [1, 1]


def _fake_runs(monkeypatch, results_file, mean_ms):
    """make all's runner replaced by one that appends a synthetic run (no process, no torch)."""
    set_env(monkeypatch, "RESULTS_FILE", str(results_file))
    set_env(monkeypatch, "DEVICE", "cpu")
    count = iter(range(1000))

    def run(name, overrides):
        if name not in mean_ms:
            return runner.Outcome("skipped", f"{name}: skipped: CUDA only")
        run_id = f"{name}-{next(count)}"
        repeat = int(overrides["REPEAT"])
        steps = [mean_ms[name] * (1 + 0.01 * ((i * 7 + repeat) % 5 - 2)) for i in range(30)]
        results.append_rows(results_file, rows_of(name, steps, run_id=run_id, repeat=repeat))
        return runner.Outcome("ok", f"{name}: ok", run_id)

    monkeypatch.setattr(run_all, "run", run)


def test_rounds_interleave_and_label_each_run(results_file, monkeypatch, capsys):
    _fake_runs(monkeypatch, results_file, {"baseline": 20.0, "fused": 18.0})
    set_env(monkeypatch, "REPEATS", "2")
    assert run_all.main(["baseline", "tf32", "fused"]) == 0
    runs = results.read(results_file).drop_duplicates("run_id")
    assert list(zip(runs["technique"], runs["repeat"])) == [("baseline", 0), ("fused", 0), ("baseline", 1),
                                                             ("fused", 1)]
    out = capsys.readouterr().out
    assert "=== [1/6] baseline (repeat 0)" in out and "all: 4 ok, 2 skipped, 0 failed" in out


def test_adaptive_rounds_stop_by_themselves_and_say_why(results_file, monkeypatch, capsys):
    _fake_runs(monkeypatch, results_file, {"baseline": 20.0, "adamw": 20.0})
    set_env(monkeypatch, "CI_HALF_WIDTH", "0.5")
    set_env(monkeypatch, "MAX_REPEATS", "5")
    assert run_all.main(["baseline", "tf32", "adamw"]) == 0
    summary = capsys.readouterr().out.split("=== summary")[1]
    # a 50% CI is met at once; three runs are the least a bootstrap over runs may rest on
    assert "adaptive: stopped after 3 round(s): every technique's CI is within ±50.0%" in summary
    assert "not measured (skipped or failed): tf32" in summary
    runs = results.read(results_file).drop_duplicates("run_id")
    assert list(runs["technique"]) == ["baseline", "adamw"] * 3  # tf32, skipped in round 1, never again


def test_max_repeats_floor_is_the_bootstrap_minimum(monkeypatch):
    set_env(monkeypatch, "MAX_REPEATS", str(stats.MIN_RUNS - 1))
    with pytest.raises(checks.BadInput, match=f"MAX_REPEATS must be an integer >= {stats.MIN_RUNS}"):
        run_all.repeat_settings(settings.read())
