"""Plots, from a synthetic results.csv with known answers."""

import matplotlib
import pytest
from helpers import noisy, rows_of, set_env

from utils import plots, results
from utils.analysis import stats
from utils.plots import __main__ as plots_command
from utils.plots import steps


@pytest.fixture
def synthetic(results_file):
    rows = (
        rows_of("baseline", 20.0)
        + rows_of("fast", 10.0)
        + rows_of("slow", 40.0)
        + rows_of("tf32", 0, status="skipped", reason="TF32 is a CUDA mode")
    )
    results.append_rows(results_file, rows)
    return results_file


def test_heatmap_values_are_relative_to_baseline_per_window(synthetic):
    df, _ = plots.select(synthetic)
    table = plots.relative_windows(df, windows=4)
    assert list(table.columns) == ["0-4", "5-9", "10-14", "15-19"]
    assert table.loc["fast"].tolist() == pytest.approx([0.5] * 4)
    assert table.loc["slow"].tolist() == pytest.approx([2.0] * 4)


def test_all_plots_are_written_with_the_prefix(synthetic, tmp_path):
    df, notes = plots.select(synthetic)
    paths, more = plots.plots_for(df, tmp_path, prefix="a100_")
    names = ["bootstrap_means", "relative_heatmap", "speedup_bars", "steptime_box", "steptime_lines"]
    assert sorted(p.name for p in paths) == [f"a100_{n}.png" for n in names]
    assert all(p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000 for p in paths)
    assert notes == more == []


def test_another_configuration_is_not_mixed_in(synthetic):
    newer = {"timestamp_utc": "2026-11-24T00:00:00+00:00", "device": "Other GPU"}
    results.append_rows(
        synthetic,
        [{**row, **newer} for row in rows_of("baseline", 100.0, run_id="b2") + rows_of("fast", 25.0, run_id="f2")],
    )
    df, notes = plots.select(synthetic)
    assert set(df["device"]) == {"Other GPU"} and "1 other configuration" in notes[0]
    assert stats.summary(df)["speedup"].to_dict() == pytest.approx({"baseline": 1.0, "fast": 4.0})
    filtered, _ = plots.select(synthetic, device_filter="test gpu")  # case-insensitive substring
    assert set(filtered["device"]) == {"Test GPU"}


def test_without_a_baseline_only_the_baseline_free_plots_are_made(results_file, tmp_path):
    results.append_rows(results_file, rows_of("fast", 10.0))
    df, _ = plots.select(results_file)
    paths, notes = plots.plots_for(df, tmp_path)
    assert (
        sorted(p.name for p in paths) == ["bootstrap_means.png", "steptime_box.png", "steptime_lines.png"]
        and "make baseline" in notes[0]
    )


def test_time_difference_pairs_steps_and_has_a_ci(results_file, tmp_path):
    results.append_rows(
        results_file, rows_of("sgd", [10.0, 11.0, 12.0] * 10) + rows_of("adam", [12.0, 13.0, 14.0] * 10)
    )
    df, _ = plots.select(results_file)
    path, mean, low, high, verdict = steps.plot_time_difference(df, "sgd", "adam", tmp_path / "d.png")
    assert stats.time_differences(df, "sgd", "adam").tolist() == [-2.0] * 30
    assert mean == pytest.approx(-2.0) and low == pytest.approx(-2.0) and high == pytest.approx(-2.0)
    assert verdict == steps.ONE_RUN_EACH  # one process each: however clear, step-to-step noise only
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("runs, said", [(1, "one run each: step-to-step noise only, not shown"),
                                        (3, "sgd is faster")])
def test_compare_names_a_faster_technique_only_across_runs(results_file, tmp_path, monkeypatch, capsys, runs, said):
    rows = [row for r in range(runs) for name, ms in (("sgd", 20.0), ("adam", 20.4))
            for row in rows_of(name, [float(v) for v in noisy(ms, seed=10 * r + len(name))[0]], run_id=f"{name}{r}")]
    results.append_rows(results_file, rows)
    for name, value in {"RESULTS_FILE": results_file, "PLOTS_DIR": tmp_path, "A": "sgd", "B": "adam"}.items():
        set_env(monkeypatch, name, str(value))
    assert plots_command.main(["--compare"]) == 0
    verdict = next(line for line in capsys.readouterr().out.splitlines() if "95% CI" in line).rsplit("]: ", 1)[1]
    assert verdict == said


@pytest.mark.parametrize("part, said", [("step", "no detectable difference"), ("optimizer", "sgd is faster")])
def test_compare_times_the_part_of_the_step_asked(results_file, tmp_path, monkeypatch, capsys, part, said):
    # the coin-flip study's question: Adam's optimizer step is twice SGD's, hidden in the whole step's noise
    rows = [row for r in range(3) for name, opt_ms in (("sgd", 0.5), ("adam", 1.0))
            for row in rows_of(name, [float(v) for v in noisy(20.0, seed=10 * r + len(name))[0]], run_id=f"{name}{r}",
                               optimizer_ms=opt_ms)]
    results.append_rows(results_file, rows)
    for name, value in {"RESULTS_FILE": results_file, "PLOTS_DIR": tmp_path, "PART": part}.items():
        set_env(monkeypatch, name, str(value))
    assert plots_command.main(["--compare"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "95% CI" in line)
    assert line.rsplit("]: ", 1)[1] == said
    if part == "optimizer":
        assert "mean -0.500 ms of optimizer step time" in line
        assert (tmp_path / "timediff_optimizer_sgd_vs_adam.png").exists()
    assert plots_command.main([]) == 0  # make plots: the box and bootstrap of the same part
    assert (tmp_path / f"{part}time_box.png").exists()


def test_a_part_no_row_records_is_one_line(results_file, tmp_path, monkeypatch, capsys):
    results.append_rows(results_file, rows_of("sgd", [10.0] * 5) + rows_of("adam", [12.0] * 5))  # no forward_ms
    for name, value in {"RESULTS_FILE": results_file, "PLOTS_DIR": tmp_path, "PART": "forward"}.items():
        set_env(monkeypatch, name, str(value))
    assert plots_command.main(["--compare"]) == 2
    assert "no measured steps of both sgd and adam with a forward time (forward_ms)" in capsys.readouterr().err


def test_compare_refuses_a_name_that_is_no_technique(results_file, tmp_path, monkeypatch, capsys):
    results.append_rows(results_file, rows_of("sgd", [10.0] * 5) + rows_of("adam", [12.0] * 5))
    for name, value in {"RESULTS_FILE": results_file, "PLOTS_DIR": tmp_path, "A": "sgdd", "B": "adam"}.items():
        set_env(monkeypatch, name, str(value))
    assert plots_command.main(["--compare"]) == 2
    assert "plots: error: unknown A sgdd; known: baseline" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.png"))


def test_speedup_bars_hatch_single_runs_and_show_the_noise_floor(results_file, monkeypatch):
    # baseline and adamw with three runs each, `fast` with one: only its bar is hatched
    rows = [
        row for r in range(3) for name in ("baseline", "adamw") for row in rows_of(name, 20.0 + r, run_id=f"{name}{r}")
    ]
    results.append_rows(results_file, rows + rows_of("fast", 10.0))
    df, _ = plots.select(results_file)
    summary = stats.summary(df)
    monkeypatch.setattr(steps, "_save", lambda fig, path: fig)  # keep the figure to look at
    ax = steps.plot_speedups(summary, df, "unused.png").axes[0]
    bars = dict(zip(summary.index, ax.patches))
    assert bars["fast"].get_hatch() == "//" and not bars["baseline"].get_hatch() and not bars["adamw"].get_hatch()
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(line.startswith("noise floor: adamw") for line in legend) and any(
        line.startswith("one run") for line in legend
    )


def test_a_speedup_bar_some_of_whose_runs_failed_is_grey_and_says_so(results_file, monkeypatch):
    # `fast` is 2x in three runs and out of memory in a fourth: its figures are the survivors', so not compared
    rows = [row for r in range(3) for name, ms in (("baseline", 20.0), ("fast", 10.0))
            for row in rows_of(name, [ms + 0.01 * i for i in range(5)], run_id=f"{name}{r}")]
    rows.append({**rows_of("fast", [10.0], run_id="fast3")[0], "status": "oom", "reason": "out of memory"})
    results.append_rows(results_file, rows)
    df, _ = plots.select(results_file)
    summary = stats.summary(df)
    monkeypatch.setattr(steps, "_save", lambda fig, path: fig)
    ax = steps.plot_speedups(summary, df, "unused.png").axes[0]
    bar = dict(zip(summary.index, ax.patches))["fast"]
    assert bar.get_facecolor()[:3] == matplotlib.colors.to_rgb("gray")
    assert any("1 of 4 runs oom: not compared" in text.get_text() for text in ax.texts)
